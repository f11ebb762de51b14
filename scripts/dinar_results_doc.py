"""The sections of docs/dinar_results.md (stage 1), one function per section (`SECTIONS`), each
turning the run's context (`dinar_results.document`: results, curves, longer runs, settings) into
markdown lines; `write_doc` joins them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import dinar_eval as ev
import dinar_references as dr
import yaml
from dinar_results_text import DIAGNOSIS, HISTORY, MISSING, READING

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "dinar" / "avatar_cpu.yaml"
DOCS = REPO / "docs"
ROWS = {"both": "RGB + neural texture (DINAR)", "neural": "neural texture only", "rgb": "RGB texture only"}
PREVIOUS = Path(__file__).resolve().parent / "dinar_results_previous.json"


def fmt(values: list[float], digits: int) -> str:
    """Mean over seeds, then each seed's value: '23.41 (23.30 / 23.52)'."""
    mean = sum(values) / len(values)
    return f"{mean:.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


DIGITS = {"psnr": 2, "ms_ssim": 4, "reid_cos": 4}
NAMES = {"psnr": "PSNR", "ms_ssim": "MS-SSIM (3 scales)", "reid_cos": "ReID cosine"}


def section_setup(ctx: dict) -> list[str]:
    from zoo.datamodules.synthetic import SyntheticPeopleDataModule

    a = ctx["args"]
    cfg = yaml.safe_load(CONFIG.read_text())
    data = cfg["data"]["init_args"]
    model = cfg["model"]["init_args"]
    lr, disc_lr = model.get("lr", 2e-3), model.get("disc_lr") or model.get("lr", 2e-3)
    settings = SyntheticPeopleDataModule(preset=data["preset"], overrides=data.get("overrides")).settings
    ids, views = settings.num_identities, settings.views_per_identity
    split = [len(r) for r in settings.split_identities().values()]  # train, val, test
    people = min(ev.EVAL_PEOPLE, split[2])
    return [
        "# DINAR stage 1 at CPU size: texture rows, seeds, merging, occlusion detector, front / back", "",
        "What this shows: the zoo's DINAR stage-1 pipeline (`NeuralAvatarSystem`: StyleGAN2 encoder + generator ->",
        "neural texture, joined with RGB channels scattered from the input image, drawn by the pix2pix neural",
        "renderer in the target pose and camera) trained end to end on a shared 2-core CPU, compared on held-out",
        "synthetic identities. Small images and textures (64 px) and a short budget: read it as \"which directions",
        "hold at this size, beyond the seed-to-seed spread\", not as a reproduction of the paper's numbers.", "",
        "## Setup (what was actually run)", "",
        f"- Command: `{ctx['command']}` (ZOO_HOME held `reid-synthetic`; `nice -n 10`,",
        f"  `OMP_NUM_THREADS=1`). Generated {ctx['date']} on {ctx['machine']}. Evaluations are cached per run",
        "  (`<out>/eval/*.json`, `dinar_eval.evaluate_model`); a rerun of the same command reuses the finished runs",
        "  and evaluations and only redraws the figures and this text.",
        *HISTORY,
        f"- Runs: {len(a.seeds)} seeds ({', '.join(map(str, a.seeds))}) x {len(ctx['rows'])} texture rows, {a.steps} optimiser "
        f"steps each (Lightning counts the G and D steps: {a.steps // 2} batches of {data['batch_size']}).",
        "  Rows: **both** = 16 generated + 5 image-sampled channels (RGB, known mask, gap-fill mask; DINAR);",
        "  **neural** = the 16 generated channels only; **rgb** = the 5 image-sampled channels only (no encoder /",
        "  generator). Same data, losses, optimiser and steps; only the seed (weights init, pair draws, crops) differs.",
        f"- Data: `SyntheticAvatarDataModule`, preset `{data['preset']}` with {data['overrides']}: {ids} identities x {views}",
        "  views, each view its own walking pose and camera (yaw 0-360), **shading from a random light per identity",
        "  and clothes off the body surface** (what a per-texel RGB texture cannot explain); split by identity",
        f"  {split[0]} / {split[1]} / {split[2]}; occlusion detector on in training (`occlusion_detector: "
        f"{data['occlusion_detector']}`), erosion {data['erode']}.",
        "- Networks: `configs/dinar/avatar_cpu.yaml` (64 px images and textures; StyleEncoder / TextureGenerator /",
        "  discriminator with channel multiplier 1, base 32, max 64, style 128; NeuralRenderer base 16, 3",
        "  downsamplings, 2 residual blocks, batch norm, **a full-resolution skip** (a named departure from DINAR's",
        "  layout, measured in \"Why earlier runs' renders did not look like the people\"); 1.2 M + 0.1 M",
        "  parameters for the DINAR row). The paper-size modules",
        "  hold the reference's parameter counts (`python benchmarks/dinar_params.py`: 34,496,991 avatar network,",
        "  7,246,369 discriminator, equal layer for layer to a tally of SamsungLabs/DINAR's definitions).",
        "- Losses and optimiser: the paper's (L2 2.2, perceptual 1.0 on random crops centred on the body, 32 px = half",
        "  the image as 256 of 512, Dice 1.0, face again x0.1, non-saturating adversarial 0.01, lazy R1 0.1 every 16",
        f"  D steps; Adam betas (0, 0.99), batch 4), except the learning rate: **Adam {lr:g} for the encoder,",
        f"  generator and renderer, {disc_lr:g} for the discriminator** (`lr` / `disc_lr` of `NeuralAvatarSystem`,",
        "  whose default is the paper's 2e-3; `configs/dinar/avatar_dinar.yaml` keeps 2e-3), **both multiplied by "
        f"{model.get('lr_decay_factor', 0.1):g} at steps {', '.join(map(str, model.get('lr_decay_milestones', []))) or '(none)'}**",
        "  (`lr_decay_milestones`; the paper's rate is constant). The departures are for the CPU budget: see",
        "  \"Why earlier runs' renders did not look like the people\" and \"How far this run goes\" below.",
        "  **Perceptual stand-in**: LPIPS(vgg) weights are not on",
        "  this machine, so training used the configured stand-in, the zoo's synthetic ReID features; each run's",
        "  log says so. Its values are ~1e-5 against an L2 of ~0.03 (curve table), so at weight 1.0 it adds",
        "  practically nothing: these runs are trained by L2, Dice, face L2 and the adversarial term.",
        f"- Evaluation (`scripts/dinar_eval.py`): the first {people} of the {split[2]} held-out identities x {views} views "
        "(`EVAL_PEOPLE`, to bound the CPU time). Every view is used as the",
        f"  input once; the avatar is rendered at the same view (**input view**, {people * views} renders) and at the "
        f"{views - 1} other views",
        f"  (**novel view**: other pose and camera, {people * views * (views - 1)} renders). **Front / back input**: the "
        "input view counts as",
        "  front when the mean cosine between the surface normal and the direction to the camera over the face",
        "  texels is > 0 (the paper's Table 2 has 8 front and 7 back inputs). Targets are composited over white",
        "  like the renders. PSNR and MS-SSIM (3 scales: 5 need sides > 160 px; weights 0.0448 / 0.2856 / 0.3001",
        "  renormalised, Gaussian 11 / 1.5) on [0, 1]; ReID cosine = mean over the 4 stages of `reid-synthetic`",
        "  (higher = same identity). **LPIPS, DISTS and KID are not reported**: their feature-network weights",
        "  (VGG16 / Inception) are not on disk here and the zoo never downloads.",
        "- Seed-to-seed spread: cells show the mean over seeds, then each seed's value in brackets. A direction",
        "  \"holds beyond the seed spread\" when every seed of one row beats every seed of the other; otherwise it is",
        "  \"within the seed spread\". Evaluation-time switches (merging, occlusion detector) compare the same",
        "  trained network: they hold when the paired difference over the test pairs has the same sign in every",
        "  seed and exceeds 2 standard errors in each.", ""]


def pairs_of(ctx: dict, pairs: tuple) -> list[tuple[str, str]]:
    return [(a, b) for a, b in pairs if a in ctx["rows"] and b in ctx["rows"]]


def verdict_rows(values_a: list[float], values_b: list[float]) -> str:
    if min(values_a) > max(values_b):
        return "holds beyond the seed spread"
    if max(values_a) < min(values_b):
        return "reversed beyond the seed spread"
    return "within the seed spread"


def section_texture_rows(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    lines = ["## Table 2 texture rows (held-out identities, single input view)", ""]
    for view in ("input", "novel"):
        lines += [f"### {view} view", "", "| texture | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|"]
        for row in ctx["rows"]:
            cells = [fmt([ev.mean(res[(row, s)], method="single", view=view, metric=m) for s in seeds], DIGITS[m])
                     for m in NAMES]
            lines.append(f"| {ROWS[row]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Directions (paper: both > RGB only and both > neural only):", ""]
    for a, b in pairs_of(ctx, (("both", "rgb"), ("both", "neural"), ("neural", "rgb"))):
        for view in ("input", "novel"):
            parts = []
            for m in NAMES:
                va = [ev.mean(res[(a, s)], method="single", view=view, metric=m) for s in seeds]
                vb = [ev.mean(res[(b, s)], method="single", view=view, metric=m) for s in seeds]
                diff = sum(va) / len(va) - sum(vb) / len(vb)
                parts.append(f"{NAMES[m]} {diff:+.{DIGITS[m]}f}: {verdict_rows(va, vb)}")
                ctx["verdicts"].append((f"{a} - {b}, {view} view, {NAMES[m]}", f"{diff:+.{DIGITS[m]}f}",
                                        verdict_rows(va, vb)))
            lines.append(f"- {a} - {b}, {view} view: " + "; ".join(parts))
    return lines + [""]


def section_front_back(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    counts = ev.count(res[("both", seeds[0])], method="single", view="input", group_by="front")
    lines = ["## Front input vs back input (novel views)", "",
             f"Inputs seen from the front: {counts.get(True, 0)}; from the back: {counts.get(False, 0)} (of {sum(counts.values())}).", "",
             "| texture | input | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for row in ctx["rows"]:
        for front in (True, False):
            cells = [fmt([ev.mean(res[(row, s)], method="single", view="novel", metric=m, front=front) for s in seeds],
                         DIGITS[m]) for m in NAMES]
            lines.append(f"| {ROWS[row]} | {'front' if front else 'back'} | " + " | ".join(cells) + " |")
    lines += ["", "Directions per input side (novel views):", ""]
    for front in (True, False):
        for a, b in pairs_of(ctx, (("both", "rgb"), ("both", "neural"))):
            parts = []
            for m in NAMES:
                va = [ev.mean(res[(a, s)], method="single", view="novel", metric=m, front=front) for s in seeds]
                vb = [ev.mean(res[(b, s)], method="single", view="novel", metric=m, front=front) for s in seeds]
                diff = f"{sum(va) / len(va) - sum(vb) / len(vb):+.{DIGITS[m]}f}"
                parts.append(f"{NAMES[m]} {diff}: {verdict_rows(va, vb)}")
                ctx["verdicts"].append((f"{a} - {b}, {'front' if front else 'back'} input, novel view, {NAMES[m]}", diff,
                                        verdict_rows(va, vb)))
            lines.append(f"- {'front' if front else 'back'} input, {a} - {b}: " + "; ".join(parts))
    return lines + [""]


def paired_lines(ctx: dict, rows: list[str], method_a: str, method_b: str, pairing: str, view: str) -> list[str]:
    res, seeds, lines = ctx["results"], ctx["args"].seeds, []
    for row in rows:
        parts = []
        for m in NAMES:
            stats = [ev.paired(res[(row, s)], method_a, method_b, m, view, pairing) for s in seeds]
            holds = all(abs(d) > 2 * se for d, se in stats) and len({d > 0 for d, _ in stats}) == 1
            mean_d = sum(d for d, _ in stats) / len(stats)
            ctx["verdicts"].append((f"{ROWS[row]}: {ev.METHOD_NAMES[method_a]} - {ev.METHOD_NAMES[method_b]}, {view} view,"
                                    f" {NAMES[m]}", f"{mean_d:+.{DIGITS[m]}f}",
                                    "holds (every seed, > 2 SE)" if holds else "not beyond the spread"))
            parts.append(f"{NAMES[m]} " + " / ".join(f"{d:+.{DIGITS[m]}f} +- {se:.{DIGITS[m]}f}" for d, se in stats)
                         + (" (holds)" if holds else " (not beyond the spread)"))
        lines.append(f"- {ROWS[row]}: " + "; ".join(parts))
    return lines


def section_merging(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    lines = ["## Single view vs merged views (paper eq. 4, tau 0.1)", "",
             "Per target view t of a held-out person: **single** = the mean over the other views used alone as",
             "input; **merged 2** = eq. 4 over views t+1 and t+2; **merged all** = eq. 4 over all the other views. Every",
             "channel is merged with softmax(cosine / 0.1) weights, no visibility mask (as DINAR's code).", "",
             "| texture | texture from | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for row in ctx["rows"]:
        for method in ("single", "merge2", "merge_all"):
            cells = [fmt([ev.mean(res[(row, s)], method=method, view="novel", metric=m, per_target=True)
                          for s in seeds], DIGITS[m]) for m in NAMES]
            lines.append(f"| {ROWS[row]} | {ev.METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    targets = len({(r["person"], r["target"]) for r in res[(ctx["rows"][0], seeds[0])]["records"] if r["method"] == "merge_all"})
    lines += ["", f"merged all - single (paired over the {targets} target views; per seed: mean +- standard error):", ""]
    lines += paired_lines(ctx, ctx["rows"], "merge_all", "single", "target", "novel")
    lines += ["", "merged 2 - single:", ""]
    lines += paired_lines(ctx, ctx["rows"], "merge2", "single", "target", "novel")
    return lines + [""]


def section_occlusion(ctx: dict) -> list[str]:
    res, seeds = ctx["results"], ctx["args"].seeds
    rows = [r for r in ctx["rows"] if r != "neural"]  # the detector only changes the image-sampled channels
    share, tex = res[("both", seeds[0])]["occlusion_share"], ctx["occlusion_texels"]
    lines = ["## Occlusion detector on / off (at inference, same trained networks)", "",
             "The networks were trained with the detector on; here the input texture is built with it on or off.",
             f"On the test inputs the detector removes {100 * share:.1f}% of the body pixels from sampling. What it",
             "removes, without any network (`dinar_eval.occlusion_texels`): mean |sampled RGB - ground-truth albedo|",
             f"is {tex['removed']['error']:.3f} on the {int(tex['removed']['texels'])} texels sampled only with the "
             f"detector off, {tex['kept']['error']:.3f} on the {int(tex['kept']['texels'])} texels sampled either way",
             "([-1, 1] units; the shading darkens every texel).", "",
             "| texture | detector | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|---|"]
    for row in rows:
        for view in ("input", "novel"):
            for method in ("single", "no_occlusion"):
                cells = [fmt([ev.mean(res[(row, s)], method=method, view=view, metric=m) for s in seeds], DIGITS[m])
                         for m in NAMES]
                lines.append(f"| {ROWS[row]} | {'on' if method == 'single' else 'off'} | {view} | "
                             + " | ".join(cells) + " |")
    for view in ("input", "novel"):
        lines += ["", f"on - off, {view} view (paired over pairs; per seed):", ""]
        lines += paired_lines(ctx, rows, "single", "no_occlusion", "pair", view)
    return lines + [""]


def section_training(ctx: dict) -> list[str]:
    series = ctx["curves"]
    lines = ["## Training curves", "", "![curves](dinar_curves.png)", "",
             f"x = logged batch; every run stops at batch {ctx['args'].steps // 2} except the longer runs ("
             + (", ".join(f"{r} s{s}" for r, s in sorted(ctx["long"])) or "none") + "), which go on; the table below "
             "is the matched budget.", "",
             "Moving average of the last 10 logged values (every 10 batches) at 10% of training, 50% and the end;",
             "\"last 20% change\" = relative change of that average over the last fifth of training (small = flat).", "",
             "| run | loss | at 10% | at 50% | end | last 20% change |", "|---|---|---|---|---|---|"]
    for (row, seed, key), pts in sorted(series.items()):
        if key not in ("train/l2", "train/dice", "train/perceptual", "train/d_loss"):
            continue
        pts = [(st, v) for st, v in pts if st < ctx["args"].steps // 2]  # matched budget (the long run goes on)
        smooth = ev.moving_average([v for _, v in pts], 10)
        at = lambda f: smooth[min(len(smooth) - 1, int(f * len(smooth)))]  # noqa: E731
        change = (at(1.0) - at(0.8)) / max(abs(at(0.8)), 1e-9)
        lines.append(f"| {row} s{seed} | {key[6:]} | {at(0.1):.4g} | {at(0.5):.4g} | {at(1.0):.4g} | {100 * change:+.1f}% |")
    return lines + [""] + long_windows(ctx)


WINDOW = 600  # batches per window of the longer runs' loss table


def window_means(pts: list[tuple[int, float]], size: int = WINDOW) -> list[float]:
    """Mean of the logged values in consecutive `size`-batch windows (a trailing partial window is dropped)."""
    last = max(st for st, _ in pts) + 1
    means = []
    for start in range(0, last - size + 1, size):
        vals = [v for st, v in pts if start <= st < start + size]
        means.append(sum(vals) / len(vals) if vals else float("nan"))
    return means


def long_windows(ctx: dict) -> list[str]:
    """The longer runs' L2 and Dice by `WINDOW`-batch windows: flat = the last windows stop falling."""
    if not ctx["long"]:
        return []
    a = ctx["args"]
    lines = [f"Longer runs (to step {a.long_steps} = batch {a.long_steps // 2}), mean training loss per {WINDOW}-batch "
             f"window (the learning rate drops x{ctx['lr_decay'][1]:g} at batches "
             + ", ".join(str(m // 2) for m in ctx["lr_decay"][0]) + "); the last column is the change of the last "
             "window against the one before:", ""]
    header = None
    for (row, seed) in sorted(ctx["long"]):
        for key in ("train/l2", "train/dice"):
            pts = ctx["curves"].get((row, seed, key))
            if not pts:
                continue
            means = window_means(pts)
            if header is None:
                header = ["| run | loss | " + " | ".join(f"{i * WINDOW}-{(i + 1) * WINDOW}" for i in range(len(means)))
                          + " | last change |", "|---|---|" + "---|" * (len(means) + 1)]
                lines += header
            change = (means[-1] - means[-2]) / means[-2] if len(means) > 1 else float("nan")
            lines.append(f"| {row} s{seed} | {key[6:]} | " + " | ".join(f"{m:.4f}" for m in means)
                         + f" | {100 * change:+.1f}% |")
    return lines + [""]


def section_figures(ctx: dict) -> list[str]:
    return ["## Figures", "", "![renders](dinar_figure.png)", "",
            f"`dinar_figure.png` (seed {ctx['args'].seeds[0]}, step {ctx['args'].steps}): one held-out person per "
            "line, the first two inputs seen from the front, the next two from the back. Columns: input view, real "
            "novel view (a view from the other side when the person has one), the render of each row ("
            + ", ".join(ROWS[r] for r in ctx["rows"]) + f"), then the {ROWS[ctx['rows'][0]]} row from all the other "
            "views merged.", "",
            "![animation](dinar_animation.png)", "",
            f"`dinar_animation.png`: the DINAR avatar (seed {ctx['args'].seeds[0]}, {ctx['animation_step']} steps) "
            "of held-out people (input image first), turntable at 0 / 90 / 180 / 270 degrees, then four phases of "
            "a walk cycle seen from 30 degrees, on the template Anny body (the person's own body shape is not "
            "estimated here).", ""] + [
            line for seed in ctx["extra_animations"] for line in (
                f"![animation seed {seed}](dinar_animation_s{seed}.png)", "",
                f"`dinar_animation_s{seed}.png`: the same people and frames from the DINAR row's seed {seed} "
                f"({ctx['animation_step']} steps).", "")] + ([
            "![renders, longer runs](dinar_figure_long.png)", "",
            f"`dinar_figure_long.png`: as `dinar_figure.png` (same people and views, seed {ctx['args'].seeds[0]}) "
            f"with the networks of the longer runs at step {ctx['args'].long_steps}: "
            + ", ".join(ROWS[r] for r in ctx["long_figure_rows"]) + ".", ""] if ctx["long_figure_rows"] else [])


def section_long(ctx: dict) -> list[str]:
    """The longer runs at every kept checkpoint after `--steps` (`ctx["long"]`: (row, seed) -> {step: result})."""
    a, res, long = ctx["args"], ctx["results"], ctx["long"]
    if not long:
        return []
    milestones, factor = ctx["lr_decay"]
    lines = [f"## Longer runs, up to {a.long_steps} steps", "",
             "Runs: " + ", ".join(f"{ROWS[r]} seed {s}" for r, s in sorted(long)) + f", continued from step {a.steps} "
             f"with the same configuration (its learning rates drop x{factor:g} at steps "
             + ", ".join(map(str, milestones)) + "). Held-out single-view metrics per kept checkpoint:", "",
             "| run | steps | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|---|"]
    for (row, seed), by_step in sorted(long.items()):
        runs = [(a.steps, res[(row, seed)])] + sorted(by_step.items())
        for view in ("input", "novel"):
            for n, r in runs:
                lines.append(f"| {row} s{seed} | {n} | {view} | " + " | ".join(
                    f"{ev.mean(r, method='single', view=view, metric=m):.{DIGITS[m]}f}" for m in NAMES) + " |")
    last = {run: by_step[a.long_steps] for run, by_step in long.items() if a.long_steps in by_step}
    rows = [r for r in ROWS if any(run[0] == r for run in last)]
    lines += ["", f"At step {a.long_steps}, per row (mean over the seeds that ran this long, then each seed):", "",
              "| texture | seeds | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|---|"]
    for view in ("input", "novel"):
        for row in rows:
            seeds = [s for r, s in sorted(last) if r == row]
            cells = [fmt([ev.mean(last[(row, s)], method="single", view=view, metric=m) for s in seeds], DIGITS[m])
                     for m in NAMES]
            lines.append(f"| {ROWS[row]} | {', '.join(map(str, seeds))} | {view} | " + " | ".join(cells) + " |")
    single = [ROWS[r] for r in rows if sum(run[0] == r for run in last) < 2]
    if single:
        lines += ["", "Rows with one seed here (" + ", ".join(single) + ") are not seed-checked: a difference to them "
                  "is read against the DINAR row's seed spread only."]
    return lines + ["", f"The animation strips are drawn by the step-{a.long_steps} checkpoints.", ""]


def section_colour(ctx: dict) -> list[str]:
    """`dinar_eval.colour_probe` per run: painted colour in, mean body colour out."""
    probes = {k: v for k, v in sorted(ctx["colour"].items()) if v}
    if not probes:
        return []
    names = list(ev.PROBE_COLOURS)
    lines = ["## Colour pass-through probe: does the input's colour reach the render?", "",
             "The first 3 held-out people's single-view textures with the image-sampled RGB channels painted one "
             "colour everywhere (generated channels kept), drawn at the input view; cells: mean RGB of the render "
             "on the body pixels ([-1, 1]), then the mean |drawn - painted| over the four colours (0 = every colour "
             "drawn back exactly; a renderer that ignored the sampled colours would draw one colour for all, as the "
             "instance-norm network of \"Why earlier runs' renders did not look like the people\" did).", "",
             "| run | steps | " + " | ".join(f"{n} {tuple(int(c) for c in ev.PROBE_COLOURS[n])}" for n in names)
             + " | mean abs error |", "|---|---|" + "---|" * (len(names) + 1)]
    for (row, seed, step), drawn in probes.items():
        error = sum(abs(d - c) for n in names for d, c in zip(drawn[n], ev.PROBE_COLOURS[n])) / (3 * len(names))
        lines.append(f"| {row} s{seed} | {step} | " + " | ".join(
            "(" + ", ".join(f"{v:+.2f}" for v in drawn[n]) + ")" for n in names) + f" | {error:.3f} |")
    return lines + [""]


def section_previous(ctx: dict) -> list[str]:
    prev = json.loads(PREVIOUS.read_text())
    res, seeds = ctx["results"], ctx["args"].seeds
    lines = ["## Previous run beside this one", "", prev["description"], "",
             f"| texture | view | metric | {prev['label']} | this run (mean of seeds) |",
             "|---|---|---|---|---|"]
    for row in ctx["rows"]:
        for view in ("input", "novel"):
            for m in NAMES:
                now = sum(ev.mean(res[(row, s)], method="single", view=view, metric=m) for s in seeds) / len(seeds)
                lines.append(f"| {ROWS[row]} | {view} | {NAMES[m]} | {prev['rows'][row][view][m]:.{DIGITS[m]}f} | "
                             f"{now:.{DIGITS[m]}f} |")
    return lines + ["", f"Same losses and metrics; the two differ in {prev['differs']} and the training "
                    f"length ({prev['steps']} vs {ctx['args'].steps} steps).", ""]


def section_missing(ctx: dict) -> list[str]:
    absent = [ROWS[r] for r in ROWS if r not in ctx["rows"]]
    return ["## Not reached here (said plainly)", ""] + (
        [f"- Rows not trained to {ctx['args'].steps} steps with every seed in the time of this run: {', '.join(absent)}."]
        if absent else []) + MISSING + [""]


def long_flatness(ctx: dict) -> list[str]:
    """One line: the longer runs' last loss window against the one before (`window_means`)."""
    cells = []
    for (row, seed) in sorted(ctx["long"]):
        for key in ("train/l2", "train/dice"):
            means = window_means(ctx["curves"].get((row, seed, key), [(0, 0.0)]))
            if len(means) > 1:
                cells.append(f"{row} s{seed} {key[6:]} {100 * (means[-1] - means[-2]) / means[-2]:+.1f}%")
    if not cells:
        return []
    return [f"- Longer runs, change of the mean training loss over their last {WINDOW}-batch window against the one "
            "before (table under \"Training curves\"): " + "; ".join(cells) + "."]


def section_reading(ctx: dict) -> list[str]:
    """What the run can say about training length, from its own numbers."""
    a, res, seeds = ctx["args"], ctx["results"], ctx["args"].seeds
    gaps = {row: [ev.mean(res[(row, s)], method="single", view="input", metric="psnr")
                  - ev.mean(res[(row, s)], method="single", view="novel", metric="psnr") for s in seeds]
            for row in ctx["rows"]}
    spread = {row: max(v) - min(v) for row in ctx["rows"]
              for v in [[ev.mean(res[(row, s)], method="single", view="novel", metric="psnr") for s in seeds]]}
    falling = sorted({f"{key[6:]}" for (row, seed, key), pts in ctx["curves"].items()
                      if key in ("train/l2", "train/dice")
                      for sm in [ev.moving_average([v for st, v in pts if st < a.steps // 2], 10)]
                      if (sm[-1] - sm[int(0.8 * (len(sm) - 1))]) / max(abs(sm[int(0.8 * (len(sm) - 1))]), 1e-9) < -0.02})
    return ["## How far this run goes", "",
            f"- Budget: {a.steps // 2} batches of 4 per run (the paper: 100k iterations); every row and seed got the "
            "same budget on a machine shared with other long jobs.",
            "- Input view minus novel view PSNR per row (per seed): " + "; ".join(
                f"{ROWS[r]} " + " / ".join(f"{g:+.2f}" for g in gaps[r]) + " dB" for r in ctx["rows"])
            + ". A network that had learnt to copy the input image's own pixels would be clearly better at the input "
            "view than at novel ones; differences this small mean the renders do not yet reproduce the input view "
            "more closely than other views.",
            "- Seed-to-seed spread of novel-view PSNR (max - min over seeds): " + "; ".join(
                f"{ROWS[r]} {spread[r]:.2f} dB" for r in ctx["rows"]) + ".",
            f"- Training losses still falling over the last fifth of the matched {a.steps}-step budget (by more than 2%): "
            + (", ".join(falling) + " (not flattened)." if falling else "none (flattened by this measure)."),
            *long_flatness(ctx),
            *READING,
            f"- With {len(seeds)} seeds, \"every seed of A beats every seed of B\" also happens by chance: for two "
            "rows that do not differ, with probability 1/6 in each direction for 2 seeds. Read a single \"holds\" or "
            "\"reversed\" among the many tested differences as weak evidence, a pattern across metrics and views as "
            "stronger.", ""]


def section_references(ctx: dict) -> list[str]:
    """Why the previous run's renders failed, and the no-network references (`dinar_references`)."""
    res = ctx["references"]
    names, seeds = {k: v for k, v in ROWS.items() if k in ctx["rows"]}, ctx["args"].seeds
    lines = ["## Why earlier runs' renders did not look like the people", "", *DIAGNOSIS,
             "No-network references on the same held-out views (`scripts/dinar_references.py`), beside this run's",
             f"trained rows (mean of seeds, step {ctx['args'].steps}):", "",
             "| texture / reference | view | " + " | ".join(NAMES.values()) + " |", "|---|---|---|---|---|"]
    for view in ("input", "novel"):
        for row, name in names.items():
            means = [sum(ev.mean(ctx["results"][(row, s)], method="single", view=view, metric=m) for s in seeds) / len(seeds)
                     for m in NAMES]
            cells = [f"{v:.{DIGITS[m]}f}" for v, m in zip(means, NAMES)]
            lines.append(f"| {name} | {view} | " + " | ".join(cells) + " |")
        for method, name in dr.REFERENCES.items():
            cells = [f"{ev.mean(res, method=method, view=view, metric=m):.{DIGITS[m]}f}" for m in NAMES]
            lines.append(f"| {name} (no network) | {view} | " + " | ".join(cells) + " |")
    lines += ["", "Unknown texels of a copy take the person's mean sampled colour; the novel-view copies show "
              "that colour wherever the input did not see the surface.", "",
              f"Where this run's input-view error lies (seed {seeds[0]}, step {ctx['args'].steps}; "
              "`dinar_references.error_regions`; MSE in [-1, 1] units; \"mask on clothes\" = the renderer's mean "
              "person mask on the clothes pixels, 1 = drawn):", "",
              "| texture | " + " | ".join(f"{dr.REGIONS[k]}: pixels / MSE / share" for k in dr.REGIONS)
              + " | image MSE (PSNR) | mask on clothes |", "|---|---|---|---|---|---|"]
    for row, name in names.items():
        reg = ctx["regions"][row]
        cells = [f"{100 * reg['regions'][k]['pixels']:.1f}% / {reg['regions'][k]['mse']:.3f} / "
                 f"{100 * reg['regions'][k]['share']:.0f}%" for k in dr.REGIONS]
        psnr = 10 * math.log10(4 / reg["mse"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {reg['mse']:.4f} ({psnr:.2f} dB) | {reg['clothes_mask']:.2f} |")
    return lines + [""]


def section_stage2(ctx: dict) -> list[str]:
    """The stage-2 block (issue 11: inpainting, Table 2 rows, sampler table) that
    scripts/dinar_complete_results.py wrote into the document, kept as it is."""
    path = DOCS / "dinar_results.md"
    text = path.read_text() if path.is_file() else ""
    start, end = "<!-- DINAR_COMPLETE:START -->", "<!-- DINAR_COMPLETE:END -->"
    if start not in text or end not in text:
        return []
    return text[text.index(start):text.index(end) + len(end)].split("\n") + [""]


SECTIONS = [section_setup, section_reading, section_references, section_texture_rows, section_front_back, section_merging,
            section_occlusion, section_long, section_colour, section_training, section_figures, section_previous,
            section_stage2, section_missing]


def summary(ctx: dict) -> list[str]:
    """Every direction the tables tested that holds beyond the spread, then the count of the others."""
    held = [v for v in ctx["verdicts"] if not v[2].startswith(("within", "not"))]
    lines = ["## Summary: directions that hold beyond the spread", "",
             f"Of {len(ctx['verdicts'])} differences tested below, {len(held)} hold(s) beyond the seed-to-seed spread "
             "(texture rows) or in every seed beyond 2 standard errors (evaluation-time switches); the rest do not.", ""]
    lines += [f"- {name}: {diff} ({verdict})" for name, diff, verdict in held]
    return lines + [""]


def write_doc(ctx: dict) -> Path:
    ctx["verdicts"] = []
    parts = [section(ctx) for section in SECTIONS]
    lines = [line for part in parts[:1] + [summary(ctx)] + parts[1:] for line in part]
    path = DOCS / "dinar_results.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
