/**
 * Bundles a bench entry point with esbuild (the one tsx itself uses) into
 * `bench/results/.build/`, to be run with plain `node`: what is measured is
 * then compiled JavaScript as shipped, not the TypeScript loader (its own
 * thread holds some 80 MB, and its `keepNames` makes every closure bigger).
 */
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

/** Where the bundles go. */
export const BUILD_DIR = fileURLToPath(new URL("../results/.build/", import.meta.url))

/**
 * Bundles `entry` (a path relative to `bench/`) into `BUILD_DIR/out` and
 * returns that path. `dependencies: "external"` (the default) leaves the
 * packages to `node_modules`, as a user's process loads them; `"bundled"`
 * puts them in the file, as `npm run build` ships the CLI.
 */
export const bundle = async (
  entry: string,
  out: string,
  dependencies: "external" | "bundled" = "external"
): Promise<string> => {
  mkdirSync(BUILD_DIR, { recursive: true })
  const outfile = `${BUILD_DIR}${out}`
  await build({
    entryPoints: [fileURLToPath(new URL(`../${entry}`, import.meta.url))],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    ...(dependencies === "external" ? { packages: "external" as const } : {}),
    logLevel: "error"
  })
  return outfile
}
