/**
 * The `ProcessHandle` of a process whose exit is an {@link ExitNotice} and
 * whose output is an {@link OutputBuffer}: what the local and container
 * process managers give, built in one place so that they cannot differ.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type { ProcessHandle, SignalName } from "../ProcessManager.js"
import { Running } from "../ProcessStatus.js"
import type { ExitNotice } from "./exitNotice.js"
import type { OutputBuffer } from "./outputBuffer.js"

/**
 * A handle for the process `pid`. `deliver` sends a signal to it (its group,
 * for the managers); once the process has ended, `signal` reaches nobody and
 * answers `false` without calling it.
 */
export const make = (options: {
  readonly pid: number
  readonly argv: ReadonlyArray<string>
  readonly notice: ExitNotice
  readonly output: OutputBuffer
  readonly deliver: (signal: SignalName) => Effect.Effect<boolean>
}): ProcessHandle => {
  const { deliver, notice, output } = options
  return {
    pid: options.pid,
    argv: options.argv,
    status: Effect.sync(() => notice.current() ?? new Running()),
    awaitExit: Deferred.await(notice.exited),
    output: output.stream,
    logTail: output.tail,
    signal: (signal) =>
      Effect.suspend(() =>
        notice.current() !== undefined ? Effect.succeed(false) : deliver(signal)
      ),
    unsafeOnExit: notice.onExit,
    unsafeOnOutput: output.subscribe
  }
}
