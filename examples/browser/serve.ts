/**
 * Serves the browser demo: the `examples/` folder over HTTP on a loopback address, the page at
 * `/browser/` (WebGPU needs a secure context: `localhost` and `127.0.0.1` count as one). Build the
 * bundle first (`deno task build:browser`); `deno task serve` does both.
 *
 * Run: `deno run -R=. -N=127.0.0.1 examples/browser/serve.ts [--port N]` (default 8000, 0 for any
 * free port); it prints the page's URL.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

/** The folder served: `examples/`, so the page reaches `../teachers/` as a static host would. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".png": "image/png",
  ".gz": "application/gzip",
  ".safetensors": "application/octet-stream",
};

/** A running demo server. */
export interface DemoServer {
  /** The page's URL, e.g. `http://127.0.0.1:8000/browser/`. */
  url: string;
  /** Stops the server and waits until it has finished. */
  shutdown(): Promise<void>;
}

/**
 * Starts a static file server for {@link ROOT} on `hostname:port` (port 0: a free one). Only GET
 * and HEAD of files under the root are answered; `/` redirects to `/browser/`, a folder serves its
 * `index.html`.
 *
 * @throws {Deno.errors.AddrInUse} when the port is taken.
 */
export function serveDemo(
  opts: { port?: number; hostname?: string; quiet?: boolean } = {},
): DemoServer {
  const hostname = opts.hostname ?? "127.0.0.1";
  const server = Deno.serve(
    { port: opts.port ?? 8000, hostname, onListen: () => {} },
    async (req) => {
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed", { status: 405 });
      }
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path === "/") return Response.redirect(new URL("/browser/", req.url), 302);
      let file = normalize(join(ROOT, path));
      if (!file.startsWith(ROOT) || path.split("/").includes("..")) {
        return new Response("not found", { status: 404 });
      }
      try {
        if ((await Deno.stat(file)).isDirectory) file = join(file, "index.html");
        const body = await Deno.readFile(file);
        const type = TYPES[extname(file)] ?? "application/octet-stream";
        return new Response(req.method === "HEAD" ? null : body, {
          headers: { "content-type": type, "cache-control": "no-cache" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const url = `http://${hostname}:${server.addr.port}/browser/`;
  if (!opts.quiet) console.log(`dfkd browser demo: ${url}`);
  return { url, shutdown: () => server.shutdown() };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { port: { type: "string" } } });
  serveDemo({ port: Number(values.port ?? 8000) });
}
