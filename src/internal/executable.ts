/**
 * Resolving an executable the way `execvp` does, so that a missing binary is
 * reported as a typed error before anything is spawned.
 *
 * @internal
 */
import { accessSync, constants, statSync } from "node:fs"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import { BinaryNotFound } from "../errors.js"

/**
 * Whether `file` is an executable file. Synchronous: two system calls of a
 * few microseconds each, where a promise per call cost ~0.1 ms of CPU per
 * PATH entry on every spawn.
 */
const isExecutable = (file: string): boolean => {
  try {
    if (statSync(file, { throwIfNoEntry: false })?.isFile() !== true) return false
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The directories of a PATH value. */
export const searchPath = (pathValue: string | undefined): ReadonlyArray<string> =>
  (pathValue ?? "").split(":").filter((dir) => dir.length > 0)

/**
 * Returns the absolute path of `binary`: as given when it holds a `/`,
 * otherwise the first executable match on `pathValue`. Relative paths are
 * taken from `cwd` (the process's working directory, as `execvp` sees them
 * after the `chdir`), by default the current one. A miss names what was
 * looked at: the directories of `pathValue`, or the path itself.
 */
export const resolveExecutable = (
  binary: string,
  pathValue: string | undefined,
  cwd: string = "."
): Effect.Effect<string, BinaryNotFound> =>
  Effect.suspend(() => {
    const dirs = searchPath(pathValue)
    const candidates = binary.includes("/")
      ? [Path.resolve(cwd, binary)]
      : dirs.map((dir) => Path.resolve(cwd, dir, binary))
    const found = candidates.find(isExecutable)
    return found !== undefined
      ? Effect.succeed(found)
      : Effect.fail(
          new BinaryNotFound({ binary, searched: binary.includes("/") ? candidates : dirs })
        )
  })
