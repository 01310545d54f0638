/**
 * The browser demo end to end, in real headless Chromium with WebGPU (SwiftShader on a machine
 * without a GPU): builds the bundle of `mod.ts`, serves `examples/` on a free loopback port, runs
 * the page at toy size and checks that the synthesis loss falls, that the student beats chance on
 * the shipped slice of the real test set, and that the student it offers for download loads in
 * Deno and scores there as in the page. It also compares the page's transfer set with the one
 * `synthesizeTransferSet` makes in Deno with the same settings (other adapter, other rounding).
 *
 * Chromium is looked for at `$DFKD_CHROMIUM`, then `/usr/bin/chromium`, `chromium-browser`,
 * `google-chrome`; without one the test is ignored (CI installs Debian's `chromium`). With
 * `DFKD_UPDATE_SCREENSHOT=1` the finished page is saved to `docs/browser-demo.png` (the README's
 * picture), otherwise to a temporary folder.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import {
  decodeSafetensors,
  evaluate,
  findDataDir,
  gpuContext,
  loadModel,
  loadModelFromBytes,
  synthesizeTransferSet,
  targetClass,
} from "../mod.ts";
import { serveDemo } from "../examples/browser/serve.ts";
import { SLICE_PATH, testSliceBytes } from "../examples/browser/make_test_slice.ts";
import { gpuReady } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUNDLE = `${ROOT}examples/browser/dfkd.js`;
const TEACHER = `${ROOT}examples/teachers/lenet5-fashion-mnist.safetensors`;
const DATA = fileURLToPath(new URL("../../shared/data/fashion-mnist", import.meta.url));
const SCREENSHOT = `${ROOT}docs/browser-demo.png`;

/** The toy run: 2 synthesis batches of 16 images, 160 distillation steps (about a minute). */
const TOY = {
  samples: 32,
  iterations: 30,
  epochs: 80,
  seed: 0,
  synthBatch: 16,
  kdBatch: 16,
  lr: 0.005,
};

function findChromium(): string | null {
  const candidates = [
    Deno.env.get("DFKD_CHROMIUM"),
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
  ];
  for (const c of candidates) {
    try {
      if (c && Deno.statSync(c).isFile) return c;
    } catch {
      // not there
    }
  }
  return null;
}

const CHROMIUM = findChromium();
if (!CHROMIUM) {
  console.log(
    "SKIP browser_test: no Chromium found (set DFKD_CHROMIUM, or `apt-get install chromium`)",
  );
}

/** What the page keeps in `globalThis.dfkdDemo`, as the test reads it back. */
interface PageState {
  status: string;
  error: string | null;
  adapter: { description: string; fallback: boolean } | null;
  synthLosses: { batch: number; iteration: number; loss: number }[];
  distillLosses: { step: number; loss: number }[];
  accuracy: number | null;
  teacherAccuracy: number | null;
  testCount: number;
  seconds: Record<string, number>;
  images: number[];
  softTargets: number[];
  gridInk: number;
}

async function buildBundle(): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "build:browser"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(
    out.code,
    0,
    `deno task build:browser failed:\n${new TextDecoder().decode(out.stderr)}`,
  );
}

async function waitForFile(path: string, timeoutMs: number): Promise<Uint8Array> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const bytes = await Deno.readFile(path);
      if (bytes.length > 0) return bytes;
    } catch {
      // not yet written
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${path}: no download after ${timeoutMs} ms`);
}

Deno.test({
  name: "browser: the demo page distils a student that beats chance and downloads it",
  ignore: !CHROMIUM,
  // puppeteer keeps a socket and timers of its own until the browser is gone.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const t0 = performance.now();
    await buildBundle();
    const bundle = await Deno.readTextFile(BUNDLE);
    assert.match(bundle, /@compute/, "the WGSL kernels are not inlined in the bundle");
    assert.doesNotMatch(
      bundle,
      /^\s*import\s[^;]*from\s*["'](?![./])/m,
      "the bundle still imports a package the browser cannot resolve",
    );

    // The shipped test slice is the one the script makes from the IDX files.
    if (findDataDir("fashion-mnist", DATA)) {
      const shipped = new Uint8Array(
        await new Response(
          (await Deno.open(SLICE_PATH)).readable.pipeThrough(new DecompressionStream("gzip")),
        ).arrayBuffer(),
      );
      assert.deepEqual(shipped, await testSliceBytes(DATA, 300), `${SLICE_PATH} is out of date`);
    }

    const server = serveDemo({ port: 0, quiet: true });
    const profile = await Deno.makeTempDir({ prefix: "dfkd-chromium-" });
    const downloads = await Deno.makeTempDir({ prefix: "dfkd-downloads-" });
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM!,
      headless: true,
      userDataDir: profile,
      args: [
        "--no-sandbox",
        "--enable-unsafe-webgpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
      ],
    });
    const logs: string[] = [];
    let state: PageState;
    try {
      const page = await browser.newPage();
      page.on("console", (m) => logs.push(`console.${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => logs.push(`page error: ${e}`));
      await page.setViewport({ width: 1200, height: 900 });
      const query = new URLSearchParams({ ...stringify(TOY), run: "1" });
      await page.goto(`${server.url}?${query}`);
      try {
        await page.waitForFunction(
          () => {
            const s = (globalThis as { dfkdDemo?: { status: string } }).dfkdDemo?.status;
            return s === "done" || s === "error";
          },
          { timeout: 240_000, polling: 500 },
        );
      } catch (e) {
        throw new Error(`the page did not finish: ${e}\n${logs.join("\n")}`);
      }
      state = await page.evaluate(() => {
        // Runs in the page (this file is checked without the DOM's types).
        // deno-lint-ignore no-explicit-any
        const g = globalThis as any;
        const d = g.dfkdDemo;
        const canvas = g.document.getElementById("grid");
        const px: Uint8ClampedArray = canvas.getContext("2d")
          .getImageData(0, 0, canvas.width, canvas.height).data;
        let ink = 0; // pixels of synthesised images: neither the light background nor empty cells
        for (let i = 0; i < px.length; i += 4) if (px[i] < 200) ink++;
        return {
          status: d.status,
          error: d.error,
          adapter: d.adapter,
          synthLosses: d.synthLosses,
          distillLosses: d.distillLosses,
          accuracy: d.accuracy,
          teacherAccuracy: d.teacherAccuracy,
          testCount: d.testCount,
          seconds: d.seconds,
          images: Array.from(d.transfer?.images ?? []) as number[],
          softTargets: Array.from(d.transfer?.softTargets ?? []) as number[],
          gridInk: ink,
        };
      });
      assert.equal(state.status, "done", `the page failed: ${state.error}\n${logs.join("\n")}`);

      // The download link hands over the student's checkpoint.
      const cdp = await page.createCDPSession();
      await cdp.send("Browser.setDownloadBehavior", {
        behavior: "allow",
        downloadPath: downloads,
      });
      await page.click("#download");
      const studentBytes = await waitForFile(`${downloads}/student.safetensors`, 15_000);

      const shot = Deno.env.get("DFKD_UPDATE_SCREENSHOT") === "1"
        ? SCREENSHOT
        : `${await Deno.makeTempDir({ prefix: "dfkd-browser-" })}/browser-demo.png`;
      await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
      console.log(`screenshot: ${shot}`);

      // -- what the page did ---------------------------------------------------------------
      const batches = new Set(state.synthLosses.map((l) => l.batch));
      assert.equal(batches.size, TOY.samples / TOY.synthBatch, "one loss curve per batch");
      for (const b of batches) {
        const curve = state.synthLosses.filter((l) => l.batch === b);
        const first = curve[0].loss;
        const last = curve.at(-1)!.loss;
        assert.ok(
          last < 0.5 * first,
          `synthesis loss of batch ${b} did not fall: ${first} → ${last}`,
        );
      }
      assert.ok(state.distillLosses.length > 10, "too few distillation losses reported");
      assert.ok(
        state.gridInk > 10_000,
        `the sample grid looks empty (${state.gridInk} dark pixels)`,
      );
      assert.equal(state.testCount, 300);
      assert.ok(state.teacherAccuracy! > 0.8, `teacher accuracy ${state.teacherAccuracy}`);
      assert.ok(state.accuracy! > 0.2, `student accuracy ${state.accuracy} is near chance (0.1)`);

      // -- the downloaded student, in Deno -------------------------------------------------
      await gpuReady;
      const { model: student, metadata } = loadModelFromBytes(studentBytes, "student.safetensors");
      assert.equal(student.arch, "lenet5-half");
      assert.equal(metadata.samples, String(TOY.samples));
      const { tensors } = decodeSafetensors(
        new Uint8Array(
          await new Response(
            (await Deno.open(SLICE_PATH)).readable.pipeThrough(new DecompressionStream("gzip")),
          ).arrayBuffer(),
        ),
      );
      const slice = {
        images: tensors.images.data,
        labels: Uint32Array.from(tensors.labels.data),
        count: tensors.labels.shape[0],
      };
      const denoAccuracy = await evaluate(student, slice);
      student.dispose();
      assert.ok(
        Math.abs(denoAccuracy - state.accuracy!) <= 0.02,
        `the downloaded student scores ${denoAccuracy} in Deno but ${state.accuracy} in the page`,
      );

      // -- the same transfer set in Deno ---------------------------------------------------
      const { model: teacher } = await loadModel(TEACHER);
      const deno = await synthesizeTransferSet(teacher, {
        samples: TOY.samples,
        iterations: TOY.iterations,
        batchSize: TOY.synthBatch,
        seed: TOY.seed,
      });
      teacher.dispose();
      const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
        let m = 0;
        for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
      };
      assert.equal(state.images.length, deno.images.length);
      const pageTargets = Float32Array.from(state.softTargets);
      let agree = 0;
      for (let i = 0; i < TOY.samples; i++) {
        if (targetClass(pageTargets, i, 10) === targetClass(deno.softTargets, i, 10)) agree++;
      }
      const imageDiff = maxDiff(state.images, deno.images);
      let sumDiff = 0;
      for (let i = 0; i < deno.images.length; i++) {
        sumDiff += Math.abs(state.images[i] - deno.images[i]);
      }
      const meanDiff = sumDiff / deno.images.length;
      const targetDiff = maxDiff(state.softTargets, deno.softTargets);
      const identical = imageDiff === 0 && targetDiff === 0;
      console.log(
        `browser vs Deno (${state.adapter?.description} vs ${gpuContext().description}), ` +
          `${TOY.samples} samples × ${TOY.iterations} iterations, seed ${TOY.seed}: ` +
          `${identical ? "byte-identical" : "not identical"}; max |Δ| images ${imageDiff} ` +
          `(mean ${meanDiff}), ` +
          `soft targets ${targetDiff}; soft-target argmax agrees on ${agree}/${TOY.samples}`,
      );
      // Measured on SwiftShader against llvmpipe: soft targets 3e-8, argmax 32/32; images from the
      // dark start U(0, 0.1): mean 8.6e-5, max 0.034 (1.4% of the pixels over 1e-3, at values of
      // 0.15-0.28): Adam's normalised step turns rounding-level differences of small gradients into
      // steps of a fraction of the learning rate. From U(0, 1) noise the max was 1.9e-5.
      assert.ok(targetDiff < 1e-4, `soft targets differ by ${targetDiff}`);
      assert.ok(meanDiff < 1e-3, `images differ by ${meanDiff} on average`);
      assert.ok(imageDiff < 0.1, `images differ by ${imageDiff}`);
      assert.ok(agree >= 0.9 * TOY.samples, `soft-target classes agree on ${agree}/${TOY.samples}`);

      console.log(
        `browser test: accuracy ${(100 * state.accuracy!).toFixed(1)}% in the page, ` +
          `${(100 * denoAccuracy).toFixed(1)}% in Deno (teacher ` +
          `${(100 * state.teacherAccuracy!).toFixed(1)}%); synthesis ` +
          `${state.seconds.synthesis.toFixed(1)} s, distillation ` +
          `${state.seconds.distillation.toFixed(1)} s; ${(bundle.length / 1024).toFixed(0)} KiB ` +
          `bundle; ${((performance.now() - t0) / 1000).toFixed(1)} s in all`,
      );
    } finally {
      await browser.close();
      await server.shutdown();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      await Deno.remove(downloads, { recursive: true }).catch(() => {});
    }
  },
});

function stringify(o: Record<string, number>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, String(v)]));
}
