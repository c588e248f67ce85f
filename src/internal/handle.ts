/**
 * The `ProcessHandle` of a process whose exit is a `Deferred` and whose
 * output is an {@link OutputBuffer}: what the local and container process
 * managers give, built in one place so that they cannot differ.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type { ProcessHandle, SignalName } from "../ProcessManager.js"
import { type ExitStatus, type ProcessStatus, Running } from "../ProcessStatus.js"
import type { OutputBuffer } from "./outputBuffer.js"

/**
 * A handle for the process `pid`. `deliver` sends a signal to it (its group,
 * for the managers); once the process has ended, `signal` reaches nobody and
 * answers `false` without calling it.
 */
export const make = (options: {
  readonly pid: number
  readonly argv: ReadonlyArray<string>
  readonly exited: Deferred.Deferred<ExitStatus>
  readonly output: OutputBuffer
  readonly deliver: (signal: SignalName) => Effect.Effect<boolean>
}): ProcessHandle => {
  const { deliver, exited, output } = options
  const ended = Deferred.isDone(exited)
  return {
    pid: options.pid,
    argv: options.argv,
    status: Effect.flatMap(ended, (done): Effect.Effect<ProcessStatus> =>
      done ? Deferred.await(exited) : Effect.succeed(new Running())
    ),
    awaitExit: Deferred.await(exited),
    output: output.stream,
    logTail: output.tail,
    signal: (signal) =>
      Effect.flatMap(ended, (done) => (done ? Effect.succeed(false) : deliver(signal)))
  }
}
