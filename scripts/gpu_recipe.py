"""Candidate recipes for the lecture model, trained and scored alike (run by scripts/gpu_run.sh).

    python scripts/gpu_recipe.py --json recipes.json --score runs/07_train_gpt_lecture \\
        --train steps3000:max_iters=3000 [--device cuda]

``--score DIR`` scores a run already made (chapter 7's, with the `lecture` preset); ``--train
NAME:field=value,...`` trains the `lecture` preset with those `TrainConfig` fields changed into
``runs/recipe_NAME`` (`gptlib.files.runs_folder`) (through `train_run`, as the command line does) and scores it. Scoring is the
ladder's: `split_loss` on the whole val split, for ``best.pt`` and for the last weights. Per run the
JSON holds the recipe, the evaluations (step, estimated val), where the best came, both whole-split
losses and whether the target (val <= 1.47 on the whole split, the best at or next to the last
evaluation) is met, so the next GPU session can choose a recipe from data.
"""

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from gptlib.checkpoint import load_checkpoint
from gptlib.config import TrainConfig
from gptlib.fast import FastGPT
from gptlib.ladder import split_loss
from gptlib.presets import get_preset
from gptlib.run import BEST, LAST, Run, load_corpus, train_run
from gptlib.device import pick_device
from gptlib.files import runs_folder

TARGET = 1.47  # whole-split val loss the lecture recipe aims at (nanoGPT's best: 1.4638, an estimate)


def parse_candidate(text: str) -> tuple[str, dict]:
    """"steps3000:max_iters=3000,weight_decay=0.1" -> ("steps3000", {"max_iters": 3000, ...})."""
    name, _, fields = text.partition(":")
    changes, known = {}, list(asdict(TrainConfig()))  # TrainConfig's field names
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"error: {key!r} is not a TrainConfig field ({', '.join(known)})")
        changes[key] = json.loads(value)
    return name, changes


def score(folder: Path, corpus, device) -> dict:
    """The run in ``folder`` (best.pt and last.pt), scored on the whole val split."""
    last, best = load_checkpoint(folder / LAST), load_checkpoint(folder / BEST)
    history = last.extra["history"]
    losses = {}
    for label, ckpt in (("best", best), ("last", last)):
        model = FastGPT(ckpt.model_config).to(device)
        model.load_state_dict(ckpt.model_state)
        losses[label] = split_loss(model, corpus.val_data, ckpt.model_config.block_size)
    steps, vals = history["step"], history["val_loss"]
    best_index = min(range(len(vals)), key=vals.__getitem__)
    return {
        "run": str(folder), "recipe": asdict(last.train_config), "steps": steps, "val_estimates": vals,
        "train_estimates": history["train_loss"], "elapsed_s": history["elapsed"],
        "best_step": steps[best_index], "last_step": steps[-1],
        "best_at_or_next_to_last": best_index >= len(vals) - 2,
        "val_whole_split_best": losses["best"], "val_whole_split_last": losses["last"],
        "target_met": losses["best"] <= TARGET and best_index >= len(vals) - 2,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--score", type=Path, action="append", default=[], help="a run folder to score")
    parser.add_argument("--train", action="append", default=[], help="NAME:field=value,... to train")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="lecture", help="the preset the candidates change (smoke: a try)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    preset = get_preset(args.preset)
    corpus = load_corpus()
    results = {}
    candidates = [parse_candidate(text) for text in args.train]  # all checked before any training
    for folder in args.score:
        if (folder / LAST).is_file():
            results[folder.name] = score(folder, corpus, device)
        else:
            print(f"{folder}: no run there (skipped)")
    for name, changes in candidates:
        out = runs_folder() / f"recipe_{name}"  # runs/ (the tests: their scratch folder)
        run = Run(model=preset.model, train=replace(preset.train, **changes), out=out, device=str(device),
                  name=f"{preset.name}+{name}")
        train_run(run, overwrite=True, corpus=corpus, progress=False)
        results[name] = score(out, corpus, device)
    print(f"\n{'run':<28}{'steps':>7}{'best at':>9}{'est. val':>10}{'whole val (best)':>18}{'(last)':>9}  target")
    for name, r in results.items():
        print(f"{name:<28}{r['last_step']:>7}{r['best_step']:>9}{min(r['val_estimates']):>10.4f}"
              f"{r['val_whole_split_best']:>18.4f}{r['val_whole_split_last']:>9.4f}  "
              f"{'met' if r['target_met'] else 'not met'}")
    args.json.write_text(json.dumps({"target_val_whole_split": TARGET, "device": str(device),
                                     "runs": results}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
