/**
 * Vitest's global setup: the CLI tests run `dist/bin/sandbox-docker.js`, so
 * it must be what `npm run build` makes of the sources now. Built here, once
 * for the whole run, when it is missing or older than any source it is made
 * from (`npm test` builds first, so then nothing is done); a build that
 * fails fails the run with its output.
 */
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))

/** What the bundle and `dist/src` are made from. */
const SOURCES = ["src", "bin", "package.json", "tsconfig.json", "tsconfig.build.json"]

/** The built outputs the tests run or import. */
const OUTPUTS = ["dist/bin/sandbox-docker.js", "dist/src/index.js", "dist/src/cli/main.js"]

const newestMtime = (path: string): number => {
  const info = statSync(path)
  if (!info.isDirectory()) return info.mtimeMs
  return Math.max(
    info.mtimeMs,
    ...readdirSync(path).map((name) => newestMtime(Path.join(path, name)))
  )
}

/** Why the build in `dist/` is not the sources' (undefined: it is). */
export const staleness = (root: string = ROOT): string | undefined => {
  const missing = OUTPUTS.filter((output) => !existsSync(Path.join(root, output)))
  if (missing.length > 0) return `${missing.join(", ")} missing`
  const built = Math.min(...OUTPUTS.map((output) => statSync(Path.join(root, output)).mtimeMs))
  const stale = SOURCES.filter((source) => existsSync(Path.join(root, source))).filter(
    (source) => newestMtime(Path.join(root, source)) > built
  )
  return stale.length === 0 ? undefined : `${stale.join(", ")} changed after the last build`
}

export default function setup(): void {
  const why = staleness()
  if (why === undefined) return
  console.log(`test setup: building the CLI (${why}): npm run build`)
  try {
    execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" })
  } catch (error) {
    throw new Error(
      `npm run build failed: the CLI tests would run a stale dist/ (${why}). Fix the build first.`,
      { cause: error }
    )
  }
  const still = staleness()
  if (still !== undefined) throw new Error(`dist/ is still not the sources' build: ${still}`)
}
