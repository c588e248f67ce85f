/**
 * A ProcessHandle for a daemon something else started: known by its pid
 * (watched through /proc), or not known at all (never seen to exit).
 *
 * @internal
 */
import { readFile } from "node:fs/promises"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { ProcessHandle } from "../ProcessManager.js"
import { Exited, type ExitStatus, Running } from "../ProcessStatus.js"

const alive = (pid: number): Effect.Effect<boolean> =>
  Effect.promise(() =>
    readFile(`/proc/${pid}/stat`, "utf8").then(
      (stat) => !/^\d+ \(.*\) Z/.test(stat),
      () => false
    )
  )

/**
 * A handle on a process this program did not start. Its exit is seen by
 * polling /proc every `pollMs`. Its exit code cannot be known (it is not our
 * child), so an exit reads as `Exited { code: 255 }`.
 */
export const external = (pid: number | undefined, pollMs = 50): ProcessHandle => {
  const gone: ExitStatus = new Exited({ code: 255 })
  const awaitExit: Effect.Effect<ExitStatus> =
    pid === undefined
      ? Effect.never
      : alive(pid).pipe(
          Effect.repeat({ schedule: Schedule.spaced(pollMs), while: (up) => up }),
          Effect.as(gone)
        )
  return {
    pid: pid ?? 0,
    argv: [],
    status:
      pid === undefined
        ? Effect.succeed(new Running())
        : Effect.map(alive(pid), (up) => (up ? new Running() : gone)),
    awaitExit,
    output: Stream.empty,
    logTail: Effect.succeed([]),
    signal: () => Effect.succeed(false)
  }
}
