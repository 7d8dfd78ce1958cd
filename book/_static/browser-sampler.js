/* browser-sampler.js: the sampler of the page "Your GPT in the browser" (book/browser.md).
 *
 * It fetches gpt-model.bin and its sidecar gpt-model.json (both lie beside this script in
 * _static/), samples a first text into #browser-sample as soon as the page has loaded, and
 * samples again at every click of Generate. Each step shows the model's top next-character
 * probabilities as bars; clicking a generated character shows, for every layer and head, how
 * much the position that chose it attended to each character of the context. The model is
 * gpt.js; this file only draws. It does nothing on a page without #browser-sampler.
 */
(function () {
  "use strict";
  const here = document.currentScript.src; // .../_static/browser-sampler.js, from any page
  const MODEL_URL = new URL("gpt-model.bin", here);
  const INFO_URL = new URL("gpt-model.json", here);
  const TOP_BARS = 10; // characters shown in the probability bars
  const FRAME_MS = 25; // let the browser draw this often, so the text appears as it is made

  const $ = (id) => document.getElementById(id);
  const show = (ch) => (ch === "\n" ? "↵" : ch === " " ? "␣" : ch); // a visible \n and space
  const nextFrame = () => new Promise((resolve) => setTimeout(resolve, 0));

  let gpt = null;
  let steps = []; // what every generated character's step yielded (see gpt.js generate)
  let run = 0; // bumped by each Generate, so an older run stops

  function setStatus(text, isError = false) {
    $("bs-status").textContent = text;
    $("bs-status").classList.toggle("bs-error", isError);
  }

  function describeModel(info) {
    const c = gpt.config;
    const parts = [`${c.n_layer} layers × ${c.n_head} heads × ${c.n_embd} channels, ` +
      `a context of ${c.block_size} characters, ${gpt.vocab.length} in the vocabulary`];
    if (info) {
      const count = (n) => n.toLocaleString("en");
      parts.push(`${count(info.parameters)} parameters in ${info.file}: ` +
        `${count(info.bytes)} bytes (${info.dtype}), sha256 ${info.sha256.slice(0, 16)}…`);
      if (info.step !== undefined) {
        parts.push(`the checkpoint of step ${info.step}` +
          (info.val_loss !== undefined ? ` (val loss ${info.val_loss.toFixed(4)})` : "") +
          (info.origin ? ` from ${info.origin}` : ""));
      }
      const error = info.max_abs_logit_error.toExponential(1);
      parts.push(`export error: logits within ${error} of the float32 model`);
    }
    $("bs-model").textContent = "Model: " + parts.join("; ") + ".";
  }

  // The top next-character probabilities of one step, as bars; the character drawn is marked.
  function drawProbs(step) {
    const ranked = step.probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
    const rows = ranked.slice(0, TOP_BARS).map(([p, i]) => {
      const row = document.createElement("div");
      row.className = "bs-bar-row" + (i === step.id ? " bs-picked" : "");
      row.innerHTML = '<span class="bs-bar-char"></span>' +
        `<span class="bs-bar"><span></span></span><span class="bs-bar-p">${p.toFixed(3)}</span>`;
      row.firstChild.textContent = show(gpt.vocab[i]);
      row.querySelector(".bs-bar span").style.width = `${(100 * p).toFixed(1)}%`;
      return row;
    });
    const note = document.createElement("div");
    note.className = "bs-note";
    const p = step.probs[step.id].toFixed(3);
    note.textContent = `drawn: ${show(step.char)} (p = ${p} at temperature 1)`;
    $("bs-probs").replaceChildren(...rows, note);
  }

  // For every layer and head: the context, each character shaded by the weight the last
  // context position gave it when the model chose this step's character.
  function drawAttention(step) {
    const grid = [];
    step.attention.forEach((heads, l) => heads.forEach((wei, h) => {
      const cell = document.createElement("div");
      cell.className = "bs-head";
      const title = document.createElement("div");
      title.className = "bs-head-title";
      title.textContent = `layer ${l}, head ${h}`;
      const text = document.createElement("div");
      text.className = "bs-head-text";
      const max = Math.max(...wei);
      step.context.forEach((id, s) => {
        const span = document.createElement("span");
        span.textContent = show(gpt.vocab[id]);
        span.style.backgroundColor = `rgba(230, 97, 1, ${(wei[s] / max).toFixed(3)})`;
        span.title = `weight ${wei[s].toFixed(3)}`;
        text.appendChild(span);
      });
      cell.append(title, text);
      grid.push(cell);
    }));
    $("bs-attention").replaceChildren(...grid);
  }

  function select(index) {
    const sample = $("browser-sample");
    sample.querySelectorAll(".bs-selected").forEach((el) => el.classList.remove("bs-selected"));
    const span = sample.querySelector(`[data-step="${index}"]`);
    if (span) span.classList.add("bs-selected");
    drawProbs(steps[index]);
    drawAttention(steps[index]);
    const ch = show(steps[index].char);
    $("bs-picked").textContent = `character ${index + 1} of the sample, “${ch}”`;
  }

  function readOptions() {
    const number = (id) => Number($(id).value);
    const topK = $("bs-topk").value.trim() === "" ? null : number("bs-topk");
    const temperature = number("bs-temperature");
    return { maxNewTokens: number("bs-length"), temperature, topK, seed: number("bs-seed") };
  }

  async function generate() {
    const mine = ++run;
    const sample = $("browser-sample");
    let it, first;
    try {
      it = GPTJS.generate(gpt, gpt.encode($("bs-prompt").value), readOptions());
      first = it.next(); // the checks run here, before the old sample is cleared
    } catch (err) {
      setStatus(err.message, true);
      return;
    }
    steps = [];
    const prompt = document.createElement("span");
    prompt.className = "bs-prompt-text";
    prompt.textContent = $("bs-prompt").value;
    sample.replaceChildren(prompt);
    setStatus("generating…");
    const t0 = performance.now();
    let lastFrame = t0;
    for (let r = first; !r.done; r = it.next()) {
      const step = r.value;
      const span = document.createElement("span");
      span.textContent = step.char;
      span.dataset.step = steps.length;
      span.className = "bs-gen";
      steps.push(step);
      sample.appendChild(span);
      if (performance.now() - lastFrame > FRAME_MS) {
        drawProbs(step);
        await nextFrame();
        if (mine !== run) return; // a newer Generate took over
        lastFrame = performance.now();
      }
    }
    const ms = performance.now() - t0;
    const rate = Math.round(steps.length / (ms / 1000));
    const speed = ms > 0 ? ` (${rate} per second, drawing included)` : "";
    setStatus(`${steps.length} characters in ${(ms / 1000).toFixed(2)} s${speed}, in this ` +
      "browser. Click a character to see what the model was looking at.");
    if (steps.length) select(steps.length - 1);
  }

  async function start() {
    try {
      const response = await fetch(MODEL_URL);
      if (!response.ok) throw new Error(`${MODEL_URL.pathname}: HTTP ${response.status}`);
      gpt = new GPTJS.GPT(GPTJS.parseModel(await response.arrayBuffer()));
    } catch (err) {
      setStatus(`Could not load the model (${err.message}). Serve the built book over ` +
        "HTTP (python -m http.server -d _build/html) rather than opening the file.", true);
      return;
    }
    let info = null;
    try {
      info = await (await fetch(INFO_URL)).json();
    } catch (err) {
      info = null; // the sidecar only says where the file came from; not needed to run
    }
    describeModel(info);
    $("bs-topk").max = gpt.vocab.length;
    $("bs-generate").disabled = false;
    $("bs-generate").addEventListener("click", generate);
    $("browser-sample").addEventListener("click", (event) => {
      const index = event.target.dataset && event.target.dataset.step;
      if (index !== undefined) select(Number(index));
    });
    await generate(); // a first sample, so the reader sees it work at once
  }

  function onLoad() {
    if ($("browser-sampler")) start();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", onLoad);
  } else {
    onLoad();
  }
})();
