/**
 * `sandbox-docker wait`: wait for a daemon that something else started.
 *
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { DaemonEvent } from "../DaemonEvent.js"
import { toStartError } from "../Dockerd.js"
import * as DockerEngine from "../DockerEngine.js"
import { external } from "../internal/externalProcess.js"
import * as Probe from "../Probe.js"
import { ReadinessEvent, waitUntilReady } from "../Readiness.js"
import { EXIT_CODES_HELP } from "./ExitCode.js"
import * as Shared from "./options.js"
import * as Reporter from "./Reporter.js"

const options = {
  socket: Options.text("socket").pipe(
    Options.withPseudoName("PATH"),
    Options.withDescription("the daemon's unix socket")
  ),
  pid: Options.integer("pid").pipe(
    Options.withDescription("the daemon's pid: stop waiting at once (exit 4) if it exits"),
    Options.optional
  ),
  policy: Shared.policy,
  deadline: Shared.deadline,
  json: Shared.json
}

/**
 * The `wait` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const wait = Command.make("wait", options, (opts) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: opts.json })
    const policy = yield* Shared.readinessPolicy(opts.policy, opts.deadline)
    if (!opts.socket.startsWith("/")) {
      return yield* new Shared.InvalidArguments({ option: "socket", problem: "must be an absolute path" })
    }
    const pid = Option.getOrUndefined(opts.pid)
    if (pid !== undefined && pid <= 0) {
      return yield* new Shared.InvalidArguments({ option: "pid", problem: "must be a positive pid" })
    }
    const engine = yield* DockerEngine.make(opts.socket)
    const probe = Probe.all([
      Probe.socketFile(opts.socket),
      Probe.enginePing(engine),
      Probe.engineInfo(engine)
    ])
    const report = yield* waitUntilReady(external(pid), probe, policy, {
      onEvent: (event) =>
        ReadinessEvent.$is("ProbeResult")(event)
          ? reporter.event(
              DaemonEvent.Probe({ attempt: event.attempt, elapsedMs: event.elapsedMs, outcome: event.outcome })
            )
          : Effect.void
    }).pipe(Effect.mapError((error) => toStartError(error, opts.socket)))
    const info = report.resultOf("info") as DockerEngine.InfoAnswer | undefined
    const ping = report.resultOf("ping") as DockerEngine.PingAnswer | undefined
    yield* reporter.event(
      DaemonEvent.Ready({
        pid: pid ?? 0,
        socket: opts.socket,
        elapsedMs: report.elapsedMs,
        attempts: report.attempts,
        serverVersion: info?.ServerVersion ?? "unknown",
        apiVersion: ping?.apiVersion ?? "unknown",
        storageDriver: info?.Driver ?? "unknown",
        restarts: 0
      })
    )
  }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    `Wait until the Docker daemon on --socket answers /_ping and /info; exit 0 when it does.\n\n${EXIT_CODES_HELP}`
  )
)
