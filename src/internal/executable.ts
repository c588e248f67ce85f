/**
 * Resolving an executable the way `execvp` does, so that a missing binary is
 * reported as a typed error before anything is spawned.
 *
 * @internal
 */
import { constants } from "node:fs"
import { access, stat } from "node:fs/promises"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import { BinaryNotFound } from "../errors.js"

const isExecutable = (file: string): Promise<boolean> =>
  stat(file)
    .then((info) => info.isFile() && access(file, constants.X_OK).then(() => true))
    .catch(() => false)

/** The directories of a PATH value. */
export const searchPath = (pathValue: string | undefined): ReadonlyArray<string> =>
  (pathValue ?? "").split(":").filter((dir) => dir.length > 0)

/**
 * Returns the absolute path of `binary`: as given when it holds a `/`,
 * otherwise the first executable match on `pathValue`. Relative paths are
 * taken from `cwd` (the process's working directory, as `execvp` sees them
 * after the `chdir`), by default the current one.
 */
export const resolveExecutable = (
  binary: string,
  pathValue: string | undefined,
  cwd: string = "."
): Effect.Effect<string, BinaryNotFound> =>
  Effect.gen(function* () {
    const dirs = searchPath(pathValue)
    const candidates = binary.includes("/")
      ? [Path.resolve(cwd, binary)]
      : dirs.map((dir) => Path.resolve(cwd, dir, binary))
    for (const candidate of candidates) {
      if (yield* Effect.promise(() => isExecutable(candidate))) return candidate
    }
    return yield* new BinaryNotFound({ binary, searched: binary.includes("/") ? [] : dirs })
  })
