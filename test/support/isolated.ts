/**
 * Isolated real dockerd configurations for tests: each gets its own temp
 * directory with socket, data-root, exec-root and pidfile, and its own empty
 * network namespace, so it can never touch the host's bridges or daemon.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { existsSync } from "node:fs"
import * as Effect from "effect/Effect"
import type { DockerdConfigInput } from "../../src/DockerdConfig.js"
import { pidsMentioning } from "../../src/internal/processTree.js"

/** Whether a real dockerd can be used here; under CI=true it must be. */
export const hasDockerd = (): boolean => {
  try {
    execFileSync("sh", ["-c", "command -v dockerd"], { stdio: "ignore" })
    return true
  } catch {
    if (process.env.CI === "true") throw new Error("CI=true but dockerd is not installed")
    return false
  }
}

/** Whether dockerd and runsc are here; under CI=true their absence is an error, never a skip. */
export const hasRunsc = (): boolean => {
  try {
    execFileSync("sh", ["-c", "command -v dockerd && command -v runsc"], { stdio: "ignore" })
    return true
  } catch {
    if (process.env.CI === "true") throw new Error("CI=true but dockerd or runsc is not installed")
    return false
  }
}

/** A fresh temp directory (short, so socket paths stay under 107 bytes). */
export const tempDir = (prefix = "sdt-"): string => mkdtempSync(`/tmp/${prefix}`)

/** An isolated configuration in `dir`. */
export const isolatedConfig = (
  dir: string,
  overrides: Partial<DockerdConfigInput> = {}
): DockerdConfigInput => ({
  socket: `${dir}/docker.sock`,
  dataRoot: `${dir}/data`,
  execRoot: `${dir}/exec`,
  pidfile: `${dir}/docker.pid`,
  network: "private",
  stopGrace: 10_000,
  ...overrides
})

/** Pids of processes still mentioning `dir` (a daemon, containerd, a shim). */
export const leftovers = (dir: string) => Effect.runPromise(pidsMentioning(dir))

/** Removes a test directory, unmounting nothing (the daemon did). */
export const removeDir = (dir: string) => {
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true })
}
