/**
 * `sandbox-docker up`: start dockerd, wait until it is ready, print the
 * report, and stay in the foreground supervising it until SIGINT or SIGTERM.
 *
 * The options are first turned into an {@link UpPlan} (validated: nothing
 * has started yet, and any bad input is an `InvalidArguments` naming the
 * option), then the plan is run.
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { DockerdConfigInput } from "../DockerdConfig.js"
import * as DockerdConfig from "../DockerdConfig.js"
import type { InvalidConfig } from "../errors.js"
import type { ReadinessPolicy } from "../ReadinessPolicy.js"
import * as Supervisor from "../Supervisor.js"
import * as Shared from "./options.js"
import * as Planned from "./planned.js"
import * as Reporter from "./Reporter.js"

const { text } = Shared

/** The most restarts `--max-restarts` accepts. */
const MAX_RESTARTS = 1_000

const options = {
  dockerd: text("dockerd", "PATH", "the dockerd binary (default: dockerd on PATH)"),
  socket: text("socket", "PATH", "the unix socket to listen on (default /var/run/docker.sock)"),
  socketMode: text(
    "socket-mode",
    "MODE",
    "the socket's mode in octal (default 0660: its owner and group only)"
  ),
  socketGroup: text(
    "socket-group",
    "GROUP",
    "the socket's group, a name or a gid (dockerd --group; default: dockerd's, docker or root)"
  ),
  tcp: text(
    "tcp",
    "HOST:PORT",
    "also listen on TCP (dockerd --host=tcp://HOST:PORT); needs --tls-ca, --tls-cert, --tls-key, or --insecure-tcp"
  ),
  tlsCa: text("tls-ca", "PATH", "with --tcp: the CA that signs client certificates (--tlscacert)"),
  tlsCert: text("tls-cert", "PATH", "with --tcp: the daemon's certificate (--tlscert)"),
  tlsKey: text("tls-key", "PATH", "with --tcp: the daemon's private key (--tlskey)"),
  insecureTcp: Options.boolean("insecure-tcp").pipe(
    Options.withDescription(
      "allow --tcp without TLS: anyone who reaches the port controls the daemon (is root here)"
    )
  ),
  dataRoot: text("data-root", "DIR", "dockerd --data-root"),
  execRoot: text("exec-root", "DIR", "dockerd --exec-root"),
  pidfile: text("pidfile", "PATH", "dockerd --pidfile"),
  profile: Shared.choice(
    "profile",
    ["default", "sandbox", "gvisor"],
    "flags profile: default (--iptables=false), sandbox (no iptables, no bridge, vfs), gvisor"
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
  stopGrace: Shared.duration(
    "stop-grace",
    "time between SIGTERM and SIGKILL on stop (default 10s)"
  ),
  restart: Shared.choice(
    "restart",
    ["never", "on-failure"],
    "restart the daemon when it dies or turns unhealthy after ready (default never)"
  ),
  maxRestarts: Shared.whole(
    "max-restarts",
    `with --restart on-failure: restarts at most this many times (default 3, at most ${MAX_RESTARTS})`
  ),
  replace: Options.boolean("replace").pipe(
    Options.withDescription(
      "stop a dockerd already running for these paths (one a killed `up` left: found by the pidfile, or naming the socket, data-root or exec-root) before starting; a pidfile holding any other process is never touched"
    )
  ),
  json: Shared.json
}

/**
 * The parsed options of `up`, before validation.
 *
 * @since 0.1.0
 * @category config
 */
export type UpOptions = Shared.ValuesOf<typeof options>

/**
 * What `up` will do, validated: nothing is started to make it.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpPlan {
  readonly _tag: "Up"
  readonly config: DockerdConfig.DockerdConfig
  readonly policy: ReadinessPolicy
  readonly restart: Supervisor.RestartPolicy
  readonly replace: boolean
  readonly json: boolean
}

const some = <K extends string, A>(key: K, value: Option.Option<A>) =>
  Option.match(value, {
    onNone: () => ({}),
    onSome: (v) => ({ [key]: v }) as { readonly [P in K]: A }
  })

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
  const tls = [opts.tlsCa, opts.tlsCert, opts.tlsKey].some(Option.isSome)
    ? {
        tls: {
          ca: Option.getOrElse(opts.tlsCa, () => ""),
          cert: Option.getOrElse(opts.tlsCert, () => ""),
          key: Option.getOrElse(opts.tlsKey, () => "")
        }
      }
    : {}
  return {
    ...some("binary", opts.dockerd),
    ...some("socket", opts.socket),
    ...some("socketMode", opts.socketMode),
    ...some("socketGroup", opts.socketGroup),
    ...Option.match(opts.tcp, {
      onNone: () => ({}),
      onSome: (address) => ({ tcp: { address, ...tls } })
    }),
    ...(opts.insecureTcp ? { allowInsecureTcp: true } : {}),
    ...some("dataRoot", opts.dataRoot),
    ...some("execRoot", opts.execRoot),
    ...some("pidfile", opts.pidfile),
    // Checked by the configuration's schema, which names the profiles.
    ...some("profile", opts.profile as Option.Option<DockerdConfig.Profile>),
    extraArgs: opts.arg,
    ...(network === undefined
      ? {}
      : { network: network === "host" || network === "private" ? network : { netns: network } }),
    ...Option.match(stopGrace, {
      onNone: () => ({}),
      onSome: (grace) => ({ stopGrace: grace })
    })
  }
}

/** The option that sets a configuration field, for messages. */
const OPTION_OF_FIELD: Readonly<Record<string, string>> = {
  binary: "dockerd",
  socket: "socket",
  socketMode: "socket-mode",
  socketGroup: "socket-group",
  tcp: "tcp",
  "tcp.address": "tcp",
  "tcp.tls.ca": "tls-ca",
  "tcp.tls.cert": "tls-cert",
  "tcp.tls.key": "tls-key",
  allowInsecureTcp: "insecure-tcp",
  dataRoot: "data-root",
  execRoot: "exec-root",
  pidfile: "pidfile",
  profile: "profile",
  extraArgs: "arg",
  network: "network",
  stopGrace: "stop-grace"
}

/** A configuration error, said in terms of the option that caused it. */
const asArguments = (error: InvalidConfig): Shared.InvalidArguments =>
  new Shared.InvalidArguments({
    option:
      OPTION_OF_FIELD[error.field] ??
      OPTION_OF_FIELD[error.field.split(".")[0] ?? ""] ??
      error.field,
    problem: error.problem
  })

/**
 * Validates the options of `up` into a plan, starting nothing.
 *
 * @since 0.1.0
 * @category config
 */
export const plan = (opts: UpOptions): Effect.Effect<UpPlan, Shared.InvalidArguments> =>
  Effect.gen(function* () {
    const policy = yield* Shared.readinessPolicy(opts.policy, opts.deadline)
    const stopGrace = yield* Shared.decodeDuration("stop-grace", opts.stopGrace)
    const restart = yield* Shared.decodeChoice(
      "restart",
      ["never", "on-failure"],
      opts.restart,
      "never"
    )
    const maxRestarts = yield* Shared.decodeWhole("max-restarts", opts.maxRestarts, {
      min: 0,
      max: MAX_RESTARTS
    })
    if (Option.isNone(opts.tcp)) {
      for (const [name, value] of [
        ["tls-ca", opts.tlsCa],
        ["tls-cert", opts.tlsCert],
        ["tls-key", opts.tlsKey]
      ] as const) {
        if (Option.isSome(value)) {
          return yield* new Shared.InvalidArguments({
            option: name,
            problem: "only goes with --tcp"
          })
        }
      }
    }
    const config = yield* DockerdConfig.decode(configInput(opts, stopGrace)).pipe(
      Effect.mapError(asArguments)
    )
    return {
      _tag: "Up",
      config,
      policy,
      restart:
        restart === "on-failure"
          ? Supervisor.onFailure(Option.getOrElse(maxRestarts, () => 3))
          : Supervisor.never,
      replace: opts.replace,
      json: opts.json
    } satisfies UpPlan
  })

/**
 * Runs a plan: starts dockerd and supervises it until interrupted.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (upPlan: UpPlan) =>
  Supervisor.run(upPlan.config, {
    readiness: upPlan.policy,
    restart: upPlan.restart,
    replace: upPlan.replace,
    onEvent: Reporter.make({ json: upPlan.json }).event
  })

/**
 * The `up` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "up",
  options,
  plan,
  "Start dockerd, wait until it is ready, print the ready report and supervise it in the foreground until SIGINT or SIGTERM; then stop it and exit 0."
)

/**
 * The `up` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const up = command(execute)
