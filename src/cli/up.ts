/**
 * `sandbox-docker up`: start dockerd, wait until it is ready, print the
 * report, and stay in the foreground supervising it until SIGINT or SIGTERM.
 *
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Duration, Effect, Option } from "effect"
import type { DockerdConfigInput } from "../DockerdConfig.js"
import * as DockerdConfig from "../DockerdConfig.js"
import * as Supervisor from "../Supervisor.js"
import { EXIT_CODES_HELP } from "./ExitCode.js"
import * as Shared from "./options.js"
import * as Reporter from "./Reporter.js"

const text = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudo),
    Options.withDescription(description),
    Options.optional
  )

const options = {
  dockerd: text("dockerd", "PATH", "the dockerd binary (default: dockerd on PATH)"),
  socket: text("socket", "PATH", "the unix socket to listen on (default /var/run/docker.sock)"),
  dataRoot: text("data-root", "DIR", "dockerd --data-root"),
  execRoot: text("exec-root", "DIR", "dockerd --exec-root"),
  pidfile: text("pidfile", "PATH", "dockerd --pidfile"),
  profile: Options.choice("profile", ["default", "sandbox", "gvisor"]).pipe(
    Options.withDefault("default" as const),
    Options.withDescription(
      "flags profile: default (--iptables=false), sandbox (no iptables, no bridge, vfs), gvisor"
    )
  ),
  arg: Options.text("arg").pipe(
    Options.withPseudoName("FLAG"),
    Options.withDescription("one more dockerd flag, e.g. --arg=--log-level=debug (repeatable)"),
    Options.repeated
  ),
  network: text(
    "network",
    "host|private|NETNS",
    "network namespace: host (default), private (a new empty one), or a named netns"
  ),
  policy: Shared.policy,
  deadline: Shared.deadline,
  stopGrace: Shared.duration("stop-grace", "time between SIGTERM and SIGKILL on stop (default 10s)"),
  restart: Options.choice("restart", ["never", "on-failure"]).pipe(
    Options.withDefault("never" as const),
    Options.withDescription("restart the daemon when it dies or turns unhealthy after ready")
  ),
  maxRestarts: Options.integer("max-restarts").pipe(
    Options.withDefault(3),
    Options.withDescription("with --restart on-failure: restarts at most this many times (default 3)")
  ),
  json: Shared.json
}

type OptionValue<O> = O extends Options.Options<infer A> ? A : never

type UpOptions = {
  readonly [K in keyof typeof options]: OptionValue<(typeof options)[K]>
}

/**
 * The daemon configuration the options describe (not yet validated).
 *
 * @since 0.1.0
 * @category config
 */
export const configInput = (
  opts: UpOptions,
  stopGrace: Option.Option<Duration.Duration>
): DockerdConfigInput => {
  const network = Option.getOrUndefined(opts.network)
  return {
    ...Option.match(opts.dockerd, { onNone: () => ({}), onSome: (binary) => ({ binary }) }),
    ...Option.match(opts.socket, { onNone: () => ({}), onSome: (socket) => ({ socket }) }),
    ...Option.match(opts.dataRoot, { onNone: () => ({}), onSome: (dataRoot) => ({ dataRoot }) }),
    ...Option.match(opts.execRoot, { onNone: () => ({}), onSome: (execRoot) => ({ execRoot }) }),
    ...Option.match(opts.pidfile, { onNone: () => ({}), onSome: (pidfile) => ({ pidfile }) }),
    profile: opts.profile,
    extraArgs: opts.arg,
    ...(network === undefined
      ? {}
      : { network: network === "host" || network === "private" ? network : { netns: network } }),
    ...Option.match(stopGrace, {
      onNone: () => ({}),
      onSome: (grace) => ({ stopGrace: Duration.toMillis(grace) })
    })
  }
}

/**
 * The `up` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const up = Command.make("up", options, (opts) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: opts.json })
    const policy = yield* Shared.readinessPolicy(opts.policy, opts.deadline)
    const stopGrace = yield* Shared.decodeDuration("stop-grace", opts.stopGrace)
    if (opts.maxRestarts < 0) {
      return yield* new Shared.InvalidArguments({ option: "max-restarts", problem: "must be 0 or more" })
    }
    const config = yield* DockerdConfig.decode(configInput(opts, stopGrace))
    return yield* Supervisor.run(config, {
      readiness: policy,
      restart:
        opts.restart === "on-failure" ? Supervisor.onFailure(opts.maxRestarts) : Supervisor.never,
      onEvent: reporter.event
    })
  })
).pipe(
  Command.withDescription(
    `Start dockerd, wait until it is ready, print the ready report and supervise it in the foreground until SIGINT or SIGTERM; then stop it and exit 0.\n\n${EXIT_CODES_HELP}`
  )
)
