// The browser demo: the bundled module (`dfkd.js`, built by `deno task build:browser` from
// `mod.ts`) run on the visitor's GPU. Settings come from the form, or from the address:
// `?samples=N&iterations=N&epochs=N&seed=N` (the form's fields), plus `synthBatch` (images
// synthesised together, default 64), `kdBatch` (distillation batch, default 64), `lr` (peak
// distillation learning rate, default 0.002) and `run=1` (start at once).
//
// Progress and results are kept in `globalThis.dfkdDemo` (see `state` below) for scripts that
// drive the page, such as the project's browser test.

import {
  CLASS_NAMES,
  decodeSafetensors,
  distill,
  evaluate,
  gridByClass,
  imageGridRgba,
  initGpu,
  loadModelFromBytes,
  modelToBytes,
  NoAdapterError,
  synthesizeTransferSet,
} from "./dfkd.js";

const TEACHER_URL = "../teachers/lenet5-fashion-mnist.safetensors";
const TEST_URL = "fashion-mnist-test-300.safetensors.gz";
const CLASSES = 10;
const COLS = 10;
const SIDE = 32;
const PIXELS = SIDE * SIDE;

const $ = (id) => document.getElementById(id);
const form = $("settings");

/** What the page has done so far; `status` is "idle", "running", "done" or "error". */
const state = {
  status: "idle",
  error: null,
  adapter: null,
  settings: null,
  /** `{ batch, iteration, loss }` per synthesis report. */
  synthLosses: [],
  /** `{ step, loss }` per distillation report. */
  distillLosses: [],
  /** Images `[N, 1, 32, 32]` and soft targets `[N, 10]` of the finished transfer set. */
  transfer: null,
  teacherAccuracy: null,
  accuracy: null,
  testCount: 0,
  seconds: {},
  /** The student checkpoint offered for download. */
  studentBytes: null,
};
globalThis.dfkdDemo = state;

function status(text) {
  $("status").textContent = text;
}

const query = new URLSearchParams(location.search);
for (const name of ["samples", "iterations", "epochs", "seed"]) {
  if (query.has(name)) form.elements[name].value = query.get(name);
}

function settingsFromPage() {
  const q = query;
  const int = (name) => Number(form.elements[name].value);
  return {
    samples: int("samples"),
    iterations: int("iterations"),
    epochs: int("epochs"),
    seed: int("seed"),
    synthBatch: Number(q.get("synthBatch") ?? 64),
    kdBatch: Number(q.get("kdBatch") ?? 64),
    lr: Number(q.get("lr") ?? 0.002),
  };
}

async function fetchBytes(url, gzip = false) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const body = gzip ? res.body.pipeThrough(new DecompressionStream("gzip")) : res.body;
  return new Uint8Array(await new Response(body).arrayBuffer());
}

async function loadTestSlice() {
  const { tensors } = decodeSafetensors(await fetchBytes(TEST_URL, true), TEST_URL);
  const count = tensors.labels.shape[0];
  return { images: tensors.images.data, labels: Uint32Array.from(tensors.labels.data), count };
}

// -- drawing ---------------------------------------------------------------------------------

const LABEL_W = 96;

function drawGrid(images, targets, n) {
  const canvas = $("grid");
  const ctx = canvas.getContext("2d");
  const { grid, filled } = n > 0
    ? gridByClass(images, targets, n, CLASSES, COLS)
    : { grid: new Float32Array(CLASSES * COLS * PIXELS), filled: new Array(CLASSES).fill(0) };
  const pad = 2;
  const cell = SIDE * 2 + pad;
  const raster = imageGridRgba(grid, CLASSES * COLS, SIDE, SIDE, CLASSES, COLS, {
    pad,
    scale: 2,
    padValue: 0.85,
  });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.putImageData(new ImageData(raster.data, raster.width, raster.height), LABEL_W, 0);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  CLASS_NAMES["fashion-mnist"].forEach((name, row) => {
    ctx.fillStyle = "#333";
    ctx.fillText(name, LABEL_W - 6, pad + row * cell + SIDE);
    // Cells no image has reached yet: light grey, not black like a dark image.
    ctx.fillStyle = "#e6e6e6";
    for (let col = filled[row]; col < COLS; col++) {
      ctx.fillRect(LABEL_W + pad + col * cell, pad + row * cell, SIDE * 2, SIDE * 2);
    }
  });
}

function drawCurve(ctx, x0, y0, w, h, title, series) {
  ctx.fillStyle = "#fff";
  ctx.fillRect(x0, y0, w, h);
  ctx.strokeStyle = "#999";
  ctx.strokeRect(x0 + 0.5, y0 + 0.5, w - 1, h - 1);
  ctx.fillStyle = "#333";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(title, x0 + 6, y0 + 15);
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]).filter(Number.isFinite);
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const [yMin, yMax] = [Math.min(...ys), Math.max(...ys)];
  const px = (x) => x0 + 8 + ((x - xMin) / (xMax - xMin || 1)) * (w - 16);
  const py = (y) => y0 + h - 18 - ((y - yMin) / (yMax - yMin || 1)) * (h - 42);
  ctx.fillText(`${yMax.toPrecision(3)}`, x0 + w - 48, y0 + 15);
  ctx.fillText(`${yMin.toPrecision(3)}`, x0 + w - 48, y0 + h - 5);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach((
      [x, y],
      i,
    ) => (i === 0 ? ctx.moveTo(px(x), py(y)) : ctx.lineTo(px(x), py(y))));
    ctx.stroke();
  }
}

function drawLosses() {
  const canvas = $("losses");
  const ctx = canvas.getContext("2d");
  const half = canvas.height / 2;
  const byBatch = new Map();
  for (const { batch, iteration, loss } of state.synthLosses) {
    if (!byBatch.has(batch)) byBatch.set(batch, []);
    byBatch.get(batch).push([iteration, loss]);
  }
  const hue = (b) => `hsl(${(b * 47) % 360} 60% 42%)`;
  const synth = [...byBatch].map(([b, points]) => ({ color: hue(b), points }));
  drawCurve(ctx, 0, 0, canvas.width, half - 4, "synthesis loss (nats) by iteration", synth);
  const kd = [{ color: "#1f5fa8", points: state.distillLosses.map((p) => [p.step, p.loss]) }];
  drawCurve(ctx, 0, half + 4, canvas.width, half - 4, "distillation loss (nats) by step", kd);
}

// -- the run ---------------------------------------------------------------------------------

let teacherBytes = null;
let testSet = null;

async function run(settings) {
  Object.assign(state, {
    status: "running",
    error: null,
    settings,
    synthLosses: [],
    distillLosses: [],
    transfer: null,
    accuracy: null,
    studentBytes: null,
    seconds: {},
  });
  $("run").disabled = true;
  $("download").hidden = true;
  $("result").textContent = "";
  drawGrid(null, null, 0);
  drawLosses();
  const { model: teacher } = loadModelFromBytes(teacherBytes, TEACHER_URL);
  let student = null;
  try {
    if (state.teacherAccuracy === null) {
      status("Scoring the teacher on the test images…");
      state.teacherAccuracy = await evaluate(teacher, testSet);
    }
    // Synthesis: the grid and the loss curve grow with each report.
    const per = PIXELS;
    const images = new Float32Array(settings.samples * per);
    const targets = new Float32Array(settings.samples * CLASSES);
    let shown = 0;
    const transfer = await synthesizeTransferSet(teacher, {
      samples: settings.samples,
      iterations: settings.iterations,
      batchSize: Math.min(settings.synthBatch, settings.samples),
      seed: settings.seed,
      logEvery: Math.max(1, Math.floor(settings.iterations / 25)),
      onProgress: (p) => {
        // The last iteration is reported once, with `done` (its loss is NaN without iterations).
        if (Number.isFinite(p.loss)) {
          state.synthLosses.push({ batch: p.batch, iteration: p.iteration, loss: p.loss });
        }
        if (p.done) {
          images.set(p.images, shown * per);
          targets.set(p.softTargets, shown * CLASSES);
          shown = p.samplesDone;
          drawGrid(images.subarray(0, shown * per), targets, shown);
        }
        drawLosses();
        status(
          `Synthesising the transfer set: batch ${p.batch + 1}/${p.batches}, iteration ` +
            `${p.iteration}/${settings.iterations}, ${Math.floor(p.samplesDone)}/${p.samples} ` +
            `images, loss ${p.loss.toFixed(4)}`,
        );
      },
    });
    state.transfer = { images: transfer.images, softTargets: transfer.softTargets };
    state.seconds.synthesis = transfer.seconds;

    const { student: s, seconds } = await distill(teacher, transfer, {
      epochs: settings.epochs,
      batchSize: Math.min(settings.kdBatch, settings.samples),
      lr: settings.lr,
      seed: settings.seed,
      logEvery: 5,
      onProgress: (p) => {
        state.distillLosses.push({ step: p.step, loss: p.loss });
        drawLosses();
        status(
          `Distilling the student: epoch ${p.epoch + 1}/${settings.epochs}, step ` +
            `${p.step}/${p.steps}, loss ${p.loss.toFixed(4)}`,
        );
      },
    });
    student = s;
    state.seconds.distillation = seconds;

    status("Scoring the student on the test images…");
    state.accuracy = await evaluate(student, testSet);
    state.studentBytes = await modelToBytes(student, {
      teacher: "lenet5-fashion-mnist",
      dataset: "fashion-mnist",
      samples: settings.samples,
      iterations: settings.iterations,
      epochs: settings.epochs,
      seed: settings.seed,
    });
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(
      new Blob([state.studentBytes], { type: "application/octet-stream" }),
    );
    link.hidden = false;
    const pct = (x) => `${(100 * x).toFixed(1)}%`;
    $("result").textContent = `Student accuracy on ${testSet.count} real test images: ` +
      `${pct(state.accuracy)} (teacher ${pct(state.teacherAccuracy)}, chance 10%).`;
    status(
      `Done: ${settings.samples} images synthesised in ${transfer.seconds.toFixed(1)} s, ` +
        `student distilled in ${seconds.toFixed(1)} s.`,
    );
    state.status = "done";
  } catch (e) {
    state.error = String(e?.stack ?? e);
    state.status = "error";
    status(`Failed: ${e?.message ?? e}`);
    console.error(e);
  } finally {
    teacher.dispose();
    student?.dispose();
    $("run").disabled = false;
  }
}

async function main() {
  const settings = settingsFromPage();
  drawGrid(null, null, 0);
  drawLosses();
  if (!navigator.gpu) return noGpu("It exposes no navigator.gpu.");
  try {
    const ctx = await initGpu();
    state.adapter = { description: ctx.description, fallback: ctx.isFallbackAdapter };
    $("adapter").textContent = `GPU: ${ctx.description || ctx.vendor || "WebGPU adapter"}` +
      (ctx.isFallbackAdapter ? " (a software fallback adapter: expect it to be slow)" : "");
  } catch (e) {
    if (e instanceof NoAdapterError) return noGpu("It found no WebGPU adapter.");
    throw e;
  }
  status("Loading the teacher and the test images…");
  [teacherBytes, testSet] = await Promise.all([fetchBytes(TEACHER_URL), loadTestSlice()]);
  state.testCount = testSet.count;
  status(`Ready. Classes: ${CLASS_NAMES["fashion-mnist"].join(", ")}.`);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (state.status !== "running") run(settingsFromPage());
  });
  if (query.get("run") === "1") await run(settings);
}

function noGpu(why) {
  $("nogpu").hidden = false;
  $("nogpu-why").textContent = why;
  $("run").disabled = true;
  status("No WebGPU: nothing can run here.");
  state.status = "error";
  state.error = `no WebGPU: ${why}`;
}

main().catch((e) => {
  state.status = "error";
  state.error = String(e?.stack ?? e);
  status(`Failed: ${e?.message ?? e}`);
  console.error(e);
});
