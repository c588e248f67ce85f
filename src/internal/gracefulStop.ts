/**
 * What a ProcessManager does when a process's scope closes: SIGTERM, a grace,
 * SIGKILL, then SIGKILL for whatever the process left in its group.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { SignalName } from "../ProcessManager.js"
import type { ExitStatus } from "../ProcessStatus.js"

/** How long to wait for the exit after SIGKILL before giving up. */
const WAIT_AFTER_KILL = Duration.seconds(5)

/** The process to stop, as its ProcessManager sees it. */
export interface StopTarget {
  readonly pid: number
  /** Completed when the process has ended. */
  readonly exited: Deferred.Deferred<ExitStatus>
  /** Sends a signal to the process and its group. */
  readonly deliver: (signal: SignalName) => Effect.Effect<boolean>
  /** SIGKILL for what is left of the process's group once it has ended. */
  readonly killRemains: Effect.Effect<void>
}

/**
 * Stops `target` unless it has ended: SIGTERM, up to `grace` for it to end
 * (an interruptible wait, so that it works in a finalizer), then SIGKILL;
 * the group's remains go last.
 */
export const stopGracefully = (target: StopTarget, grace: Duration.Duration): Effect.Effect<void> =>
  Effect.gen(function* () {
    const awaitExitWithin = (limit: Duration.Duration) =>
      Deferred.await(target.exited).pipe(Effect.interruptible, Effect.timeout(limit))
    if (!(yield* Deferred.isDone(target.exited))) {
      yield* target.deliver("SIGTERM")
      const stopped = yield* Effect.option(awaitExitWithin(grace))
      if (Option.isNone(stopped)) {
        yield* Effect.logWarning("process ignored SIGTERM; sending SIGKILL").pipe(
          Effect.annotateLogs({ pid: target.pid, graceMs: Duration.toMillis(grace) })
        )
        yield* target.deliver("SIGKILL")
        yield* Effect.ignore(awaitExitWithin(WAIT_AFTER_KILL))
      }
    }
    yield* target.killRemains
  })
