/**
 * A fresh temp dir for a test on a real dockerd, checked and removed after
 * it. Apart from `isolated.ts` because it asserts with vitest's `expect`,
 * and the bench imports `isolated.ts` outside vitest.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { mountEntriesUnder, pidsMentioning } from "../../src/internal/processTree.js"
import * as Dockerd from "../../src/Dockerd.js"
import type { DockerHost } from "../../src/DockerHost.js"
import type { DockerdConfigInput } from "../../src/DockerdConfig.js"
import { ProcessManager } from "../../src/ProcessManager.js"
import { removeDir, tempDir } from "./isolated.js"

/** Processes mentioning `dir`, and mounts under it. */
export const remains = (dir: string) =>
  Effect.all({
    processes: pidsMentioning(dir),
    mounts: Effect.map(mountEntriesUnder(dir), (entries) => entries.map((entry) => entry.point))
  })

/**
 * Runs `body` with a fresh temp dir, the local ProcessManager and this
 * machine's DockerHost (`Dockerd.layerNode`), in a scope
 * of its own; once that scope is closed nothing may mention the dir or be
 * mounted under it. The dir is removed however the body ends (a `finally`
 * in a generator does not run when a yielded effect fails).
 */
export const withDir = <A, E>(
  body: (dir: string) => Effect.Effect<A, E, ProcessManager | DockerHost | Scope.Scope>
) =>
  Effect.acquireUseRelease(
    Effect.sync(() => tempDir()),
    (dir) =>
      Effect.gen(function* () {
        const result = yield* body(dir).pipe(Effect.scoped, Effect.provide(Dockerd.layerNode))
        expect(yield* remains(dir)).toEqual({ processes: [], mounts: [] })
        return result
      }),
    (dir) => Effect.sync(() => removeDir(dir))
  )

/**
 * `Dockerd.start` of `config` expected to fail, on the local ProcessManager
 * wrapped to record every argv it is asked to run: the error, and the execs.
 */
export const failedStartExecs = (config: DockerdConfigInput) =>
  Effect.gen(function* () {
    const manager = yield* ProcessManager
    const execs: Array<ReadonlyArray<string>> = []
    const counting = ProcessManager.of({
      exec: (argv, options) => {
        execs.push(argv)
        return manager.exec(argv, options)
      }
    })
    const error = yield* Effect.flip(
      Effect.scoped(Dockerd.start(config)).pipe(Effect.provideService(ProcessManager, counting))
    )
    return { error, execs }
  })
