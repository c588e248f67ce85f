/**
 * `sandbox-docker wait`: wait for a daemon that something else started.
 *
 * The options are first validated into a {@link WaitPlan}, then the plan
 * is run.
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { DaemonEvent } from "../DaemonEvent.js"
import { toStartError } from "../Dockerd.js"
import { SocketPath } from "../DockerdConfig.js"
import * as DockerEngine from "../DockerEngine.js"
import { external } from "../internal/externalProcess.js"
import * as Probe from "../Probe.js"
import { ReadinessEvent, waitUntilReady } from "../Readiness.js"
import type { ReadinessPolicy } from "../ReadinessPolicy.js"
import * as Shared from "./options.js"
import * as Planned from "./planned.js"
import * as Reporter from "./Reporter.js"

const options = {
  socket: Options.text("socket").pipe(
    Options.withPseudoName("PATH"),
    Options.withDescription("the daemon's unix socket")
  ),
  pid: Shared.whole("pid", "the daemon's pid: stop waiting at once (exit 4) if it exits"),
  policy: Shared.policy,
  deadline: Shared.deadline,
  json: Shared.json
}

/**
 * The parsed options of `wait`, before validation.
 *
 * @since 0.1.0
 * @category config
 */
export type WaitOptions = Shared.ValuesOf<typeof options>

/**
 * What `wait` will do, validated.
 *
 * @since 0.1.0
 * @category models
 */
export interface WaitPlan {
  readonly _tag: "Wait"
  readonly socket: string
  readonly pid: number | undefined
  readonly policy: ReadinessPolicy
  readonly json: boolean
}

/** The highest pid Linux hands out (`pid_max` at most 2^22). */
const MAX_PID = 4_194_304

/**
 * Validates the options of `wait` into a plan.
 *
 * @since 0.1.0
 * @category config
 */
export const plan = (opts: WaitOptions): Effect.Effect<WaitPlan, Shared.InvalidArguments> =>
  Effect.gen(function* () {
    const policy = yield* Shared.readinessPolicy(opts.policy, opts.deadline)
    const socket = Schema.decodeUnknownEither(SocketPath)(opts.socket)
    if (Either.isLeft(socket)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(socket.left)[0]
      return yield* new Shared.InvalidArguments({
        option: "socket",
        problem: issue?.message ?? "must be an absolute path"
      })
    }
    const pid = yield* Shared.decodeWhole("pid", opts.pid, { min: 1, max: MAX_PID })
    return {
      _tag: "Wait",
      socket: socket.right,
      pid: Option.getOrUndefined(pid),
      policy,
      json: opts.json
    } satisfies WaitPlan
  })

/**
 * Runs a plan: waits until the daemon is ready and prints the report.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (waitPlan: WaitPlan) =>
  Effect.gen(function* () {
    const { pid, policy, socket } = waitPlan
    const reporter = Reporter.make({ json: waitPlan.json })
    const engine = yield* DockerEngine.make(socket)
    const probe = Probe.all([
      yield* Probe.socketFile(socket),
      Probe.enginePing(engine),
      Probe.engineInfo(engine)
    ])
    const report = yield* waitUntilReady(external(pid), probe, policy, {
      onEvent: (event) =>
        ReadinessEvent.$is("ProbeResult")(event)
          ? reporter.event(
              DaemonEvent.Probe({
                attempt: event.attempt,
                elapsedMs: event.elapsedMs,
                outcome: event.outcome
              })
            )
          : Effect.void
    }).pipe(Effect.mapError((error) => toStartError(error, socket)))
    const info = report.resultOf("info") as DockerEngine.InfoAnswer | undefined
    const ping = report.resultOf("ping") as DockerEngine.PingAnswer | undefined
    yield* reporter.event(
      DaemonEvent.Ready({
        pid: pid ?? 0,
        socket,
        elapsedMs: report.elapsedMs,
        attempts: report.attempts,
        serverVersion: info?.ServerVersion ?? "unknown",
        apiVersion: ping?.apiVersion ?? "unknown",
        storageDriver: info?.Driver ?? "unknown",
        restarts: 0
      })
    )
  }).pipe(Effect.scoped)

/**
 * The `wait` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "wait",
  options,
  plan,
  "Wait until the Docker daemon on --socket answers /_ping and /info; exit 0 when it does."
)

/**
 * The `wait` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const wait = command(execute)
