/**
 * What every ProcessManager does when a process's scope closes: SIGTERM, a
 * grace, SIGKILL, then SIGKILL for whatever the process left in its group.
 *
 * @internal
 */
import { Deferred, Duration, Effect, Option, type Scope } from "effect"
import type { SignalName } from "../ProcessManager.js"
import type { ExitStatus } from "../ProcessStatus.js"

/** How long to wait for the exit after SIGKILL before giving up. */
const WAIT_AFTER_KILL = Duration.seconds(5)

/** The process to stop, as its ProcessManager sees it. */
export interface StopTarget {
  readonly pid: number
  /** Completed when the process has ended. */
  readonly exited: Deferred.Deferred<ExitStatus>
  /** Sends a signal to the process and its group, even if it seems gone. */
  readonly deliver: (signal: SignalName) => Effect.Effect<boolean>
  /** SIGKILL for what is left of the process's group once it has ended. */
  readonly killRemains: Effect.Effect<void>
}

/**
 * Adds the finalizer that stops `target` when the scope closes: SIGTERM, up
 * to `grace` for it to end, then SIGKILL; the group's remains go last.
 */
export const stopOnScopeClose = (
  target: StopTarget,
  grace: Duration.Duration
): Effect.Effect<void, never, Scope.Scope> => {
  const awaitExitWithin = (limit: Duration.Duration) =>
    Deferred.await(target.exited).pipe(Effect.interruptible, Effect.timeout(limit))
  return Effect.addFinalizer(() =>
    Effect.gen(function* () {
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
      // Whatever the leader left behind in its group goes too.
      yield* target.killRemains
    })
  )
}
