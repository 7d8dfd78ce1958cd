/* gpt.js: the book's GPT (gptlib/model.py) again, in plain JavaScript, to sample in
 * the page.
 *
 * It reads the file that gptlib/export.py writes, runs the same forward pass one token
 * at a time with a KV cache (as gptlib/kvcache.py does), and samples with temperature
 * and top-k from a seeded generator. No library, no network: in a browser it defines
 * `window.GPTJS`; in Node, `require("./gpt.js")` returns the same object (the tests
 * compare it with torch).
 *
 * Shapes: C = n_embd, nh = n_head, hs = head size (C / nh), V = vocabulary size,
 * T = tokens so far. Vectors are Float32Arrays; a Linear weight (out, in) is stored
 * row-major, as in torch, so y = W x + b.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.GPTJS = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // ---- The file: "GPTB", version, header length, a JSON header, the raw tensors -----

  // An IEEE half (1 sign, 5 exponent, 10 fraction bits) as a number; exact in float32.
  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) return sign * frac * 2 ** -24; // subnormal
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }

  // ArrayBuffer -> {config, vocab, source, weights: {name: Float32Array}}, de-quantised
  // exactly as gptlib.export does it, so Python can rebuild the same float32 model.
  function parseModel(buffer) {
    const view = new DataView(buffer);
    const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
    if (magic !== "GPTB") throw new Error("not a gptlib browser model file (no GPTB)");
    const version = view.getUint32(4, true);
    if (version !== 1) throw new Error(`model file version ${version}; gpt.js reads 1`);
    const length = view.getUint32(8, true);
    const text = new TextDecoder().decode(new Uint8Array(buffer, 12, length));
    const header = JSON.parse(text);
    const start = 12 + length;
    const weights = {};
    for (const t of header.tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const w = new Float32Array(n);
      const at = start + t.offset;
      for (let i = 0; i < n; i++) {
        if (t.dtype === "float32") {
          w[i] = view.getFloat32(at + 4 * i, true);
        } else if (t.dtype === "float16") {
          w[i] = halfToFloat(view.getUint16(at + 2 * i, true));
        } else {
          w[i] = view.getInt8(at + i) * t.scale; // int8: q * scale, rounded on store
        }
      }
      weights[t.name] = w;
    }
    const source = header.source || {};
    return { config: header.config, vocab: header.vocab, source, weights };
  }

  // ---- The pieces, smallest first ---------------------------------------------------

  // y = W x + b for W (out, in); b may be null (the attention heads have no bias).
  function linear(x, W, b, out) {
    const n = x.length;
    const y = new Float32Array(out);
    for (let i = 0; i < out; i++) {
      let s = b ? b[i] : 0;
      for (let j = 0; j < n; j++) s += W[i * n + j] * x[j];
      y[i] = s;
    }
    return y;
  }

  // nn.LayerNorm(C): to mean 0 and variance 1 (the biased variance, eps 1e-5), then
  // scaled and shifted by the learned weight and bias.
  function layerNorm(x, w, b) {
    const n = x.length;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[i];
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (x[i] - mean) ** 2;
    variance /= n;
    const inv = 1 / Math.sqrt(variance + 1e-5);
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
    return y;
  }

  // Probabilities from scores; subtracting the max first keeps exp() from overflowing.
  function softmax(xs) {
    let max = -Infinity;
    for (const x of xs) max = Math.max(max, x);
    const e = Array.from(xs, (x) => Math.exp(x - max));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / sum);
  }

  // ---- The model --------------------------------------------------------------------

  // A decoder-only transformer over characters: gptlib.model.GPT, one token at a time.
  class GPT {
    constructor(model) {
      this.config = model.config;
      this.vocab = model.vocab;
      this.source = model.source;
      this.stoi = new Map(model.vocab.map((ch, i) => [ch, i]));
      this.w = model.weights;
      this.C = model.config.n_embd;
      this.hs = this.C / model.config.n_head;
    }

    // Keys and values of every layer and head for the tokens so far (kvcache.KVCache).
    newCache() {
      const { n_layer, n_head, block_size } = this.config;
      const make = () => Array.from({ length: n_layer }, () =>
        Array.from({ length: n_head }, () => new Float32Array(block_size * this.hs)));
      return { k: make(), v: make(), length: 0 };
    }

    // One head of causal self-attention (gptlib.attention.Head) for the token at
    // position t: its query against the keys of tokens 0..t. Returns its output (hs)
    // and its attention weights (t+1).
    head(x, l, h, cache) {
      const p = `blocks.${l}.sa.heads.${h}.`;
      const hs = this.hs;
      const t = cache.length;
      const q = linear(x, this.w[p + "query.weight"], null, hs); // (C) -> (hs)
      const keys = cache.k[l][h];
      const values = cache.v[l][h];
      keys.set(linear(x, this.w[p + "key.weight"], null, hs), t * hs); // cache this key
      values.set(linear(x, this.w[p + "value.weight"], null, hs), t * hs); // and value
      const scores = new Float32Array(t + 1); // tokens after t do not exist yet: causal
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += q[i] * keys[s * hs + i];
        scores[s] = dot * hs ** -0.5; // scaled so the scores keep unit variance
      }
      const wei = Float32Array.from(softmax(scores)); // (t+1), sums to 1
      const out = new Float32Array(hs);
      for (let s = 0; s <= t; s++) {
        for (let i = 0; i < hs; i++) out[i] += wei[s] * values[s * hs + i];
      }
      return { out, wei }; // out: the weighted average of the values
    }

    // Block l (gptlib.model.Block): communication (attention), then computation (MLP),
    // each pre-normed and added to the residual stream x, in place.
    block(x, l, cache) {
      const p = `blocks.${l}.`;
      const C = this.C;
      const h1 = layerNorm(x, this.w[p + "ln1.weight"], this.w[p + "ln1.bias"]);
      const heads = [];
      const cat = new Float32Array(C); // the heads side by side: nh x (hs) -> (C)
      for (let h = 0; h < this.config.n_head; h++) {
        const { out, wei } = this.head(h1, l, h, cache);
        cat.set(out, h * this.hs);
        heads.push(wei);
      }
      const proj = p + "sa.proj.";
      const sa = linear(cat, this.w[proj + "weight"], this.w[proj + "bias"], C); // (C)
      for (let i = 0; i < C; i++) x[i] += sa[i]; // x = x + sa(ln1(x))
      const h2 = layerNorm(x, this.w[p + "ln2.weight"], this.w[p + "ln2.bias"]);
      const f = p + "ffwd.net.";
      const up = linear(h2, this.w[f + "0.weight"], this.w[f + "0.bias"], 4 * C);
      for (let i = 0; i < up.length; i++) up[i] = Math.max(0, up[i]); // ReLU, (4C)
      const down = linear(up, this.w[f + "2.weight"], this.w[f + "2.bias"], C); // (C)
      for (let i = 0; i < C; i++) x[i] += down[i]; // x = x + ffwd(ln2(x))
      return heads; // nh x (t+1): each head's attention weights
    }

    // Token `id` at position cache.length -> its logits (V), attention[layer][head].
    step(id, cache) {
      const { block_size, n_layer, vocab_size } = this.config;
      const t = cache.length;
      if (t >= block_size) throw new Error(`the cache is full (${block_size} tokens)`);
      const C = this.C;
      const tok = this.w["token_embedding_table.weight"];
      const pos = this.w["position_embedding_table.weight"];
      const x = new Float32Array(C);
      for (let i = 0; i < C; i++) x[i] = tok[id * C + i] + pos[t * C + i]; // what+where
      const attention = [];
      for (let l = 0; l < n_layer; l++) attention.push(this.block(x, l, cache));
      cache.length = t + 1;
      const xf = layerNorm(x, this.w["ln_f.weight"], this.w["ln_f.bias"]);
      const W = this.w["lm_head.weight"];
      const logits = linear(xf, W, this.w["lm_head.bias"], vocab_size); // (C) -> (V)
      return { logits, attention };
    }

    // The logits (T, V) of every position of `ids` (T <= block_size), as GPT.forward.
    forward(ids) {
      const cache = this.newCache();
      return ids.map((id) => this.step(id, cache).logits);
    }

    // Text -> token ids; an unknown character is an error that names it.
    encode(text) {
      const chars = Array.from(text);
      const unknown = [...new Set(chars.filter((ch) => !this.stoi.has(ch)))];
      if (unknown.length) {
        const names = unknown.map((c) => JSON.stringify(c)).join(", ");
        throw new Error(`unknown character(s) ${names}: not in this vocabulary of ` +
          `${this.vocab.length} characters; remove or replace them`);
      }
      return chars.map((ch) => this.stoi.get(ch));
    }

    decode(ids) {
      return ids.map((i) => this.vocab[i]).join("");
    }
  }

  // ---- Sampling ---------------------------------------------------------------------

  // A seeded generator of numbers in [0, 1): mulberry32 (Tommy Ettinger's public-domain
  // 32-bit generator; small, and good enough to sample with). The same seed gives the
  // same text in every browser and in Node; it is not torch's generator, so the text
  // differs from Python's.
  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // Pick the next token from logits (V), as gptlib.sampling.sample_next: temperature 0
  // is greedy (the first of equal maxima, like torch.argmax); top-k keeps the k largest
  // logits (and any equal to the k-th).
  function sampleNext(logits, temperature, topK, random) {
    if (temperature === 0) {
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
      return best;
    }
    let z = Array.from(logits, (x) => x / temperature); // < 1 sharpens, > 1 flattens
    if (topK) {
      const kth = [...z].sort((a, b) => b - a)[topK - 1];
      z = z.map((x) => (x < kth ? -Infinity : x)); // keep only the k most likely
    }
    const probs = softmax(z);
    let u = random();
    for (let i = 0; i < probs.length; i++) {
      u -= probs[i];
      if (u < 0) return i;
    }
    let last = probs.length - 1; // u was within rounding of 1: the last drawable token
    while (probs[last] === 0) last--;
    return last;
  }

  // The checks of gptlib.sampling.check_sampling_args, with the page's names for them.
  function checkSamplingArgs(maxNewTokens, temperature, topK, seed, vocabSize) {
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw new Error(`length must be an integer >= 0, got ${maxNewTokens}`);
    }
    if (!Number.isFinite(temperature) || temperature < 0) {
      throw new Error(`temperature must be >= 0 (0 = greedy), got ${temperature}`);
    }
    if (topK !== null && (!Number.isInteger(topK) || topK < 1 || topK > vocabSize)) {
      throw new Error(`top-k must be an integer from 1 to ${vocabSize} ` +
        `(or empty: no limit), got ${topK}`);
    }
    if (!Number.isInteger(seed)) {
      throw new Error(`seed must be an integer, got ${seed}`);
    }
  }

  // Yield maxNewTokens new tokens one at a time, as kvcache.iter_generate_cached does:
  // prefill the cache with the prompt (its last block_size tokens), then feed one token
  // per step. Positions are absolute (a learned table of block_size rows), so a full
  // cache cannot slide; it is rebuilt from the last block_size / 2 tokens, from
  // position 0. Each step yields the token and what the model thought: its
  // probabilities (temperature 1), the context it read, and for every layer and head
  // the attention weights of the context's last token, whose logits chose this one.
  function* generate(gpt, promptIds, options = {}) {
    const { maxNewTokens = 300, temperature = 1, topK = null, seed = 1337 } = options;
    const { block_size, vocab_size } = gpt.config;
    if (!promptIds.length) throw new Error("the prompt is empty: type something");
    checkSamplingArgs(maxNewTokens, temperature, topK, seed, vocab_size);
    const keep = Math.max(1, Math.floor(block_size / 2));
    const random = mulberry32(seed);
    let cache = gpt.newCache();
    let context = promptIds.slice(-block_size);
    let out;
    for (const id of context) out = gpt.step(id, cache); // prefill
    for (let i = 0; i < maxNewTokens; i++) {
      const id = sampleNext(out.logits, temperature, topK, random);
      const probs = softmax(out.logits);
      yield { id, char: gpt.vocab[id], probs, attention: out.attention, context };
      if (i === maxNewTokens - 1) break;
      context = [...context, id];
      if (cache.length < block_size) {
        out = gpt.step(id, cache); // one token's work
      } else {
        context = context.slice(-keep); // full: re-encode the last `keep`, from 0 on
        cache = gpt.newCache();
        for (const c of context) out = gpt.step(c, cache);
      }
    }
  }

  return {
    parseModel, halfToFloat, linear, layerNorm, softmax, GPT, mulberry32, sampleNext,
    generate,
  };
});
