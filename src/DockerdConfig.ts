/**
 * The configuration of one Docker daemon, as a Schema: binary, socket,
 * data-root, exec-root, pidfile, a profile of flags and extra flags. The
 * command line is built as argv, never through a shell.
 *
 * @since 0.1.0
 */
import { Duration, Effect, ParseResult, Schema } from "effect"
import { InvalidConfig } from "./errors.js"

/**
 * Named sets of dockerd flags.
 *
 * - `default`: the seed's minimal command, `--iptables=false`.
 * - `sandbox`: the platform's later flags for sandboxes without iptables or a
 *   bridge: `--iptables=false --ip6tables=false --bridge=none --storage-driver=vfs`.
 * - `gvisor`: what Docker needs under gVisor's runsc: no iptables, no ip
 *   forwarding, no bridge, the vfs storage driver.
 *
 * @since 0.1.0
 * @category profiles
 */
export const profileFlags = {
  default: ["--iptables=false"],
  sandbox: ["--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"],
  gvisor: [
    "--iptables=false",
    "--ip6tables=false",
    "--ip-forward=false",
    "--bridge=none",
    "--storage-driver=vfs"
  ]
} as const satisfies Record<string, ReadonlyArray<string>>

/**
 * The name of a profile.
 *
 * @since 0.1.0
 * @category profiles
 */
export const Profile = Schema.Literal("default", "sandbox", "gvisor").annotations({
  message: (issue) => `"${String(issue.actual)}" is not a profile; use default, sandbox or gvisor`
})

/**
 * @since 0.1.0
 * @category profiles
 */
export type Profile = typeof Profile.Type

/** The longest path a unix socket address can hold on Linux. */
const MAX_SOCKET_PATH_BYTES = 107

const AbsolutePath = Schema.String.pipe(
  Schema.filter((path) => path.startsWith("/") || "must be an absolute path (starting with /)"),
  Schema.filter((path) => !path.includes("\0") || "must not contain a NUL byte")
)

const SocketPath = AbsolutePath.pipe(
  Schema.filter(
    (path) =>
      Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES ||
      `is ${Buffer.byteLength(path)} bytes long; a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}`
  )
)

/** Flags the configuration sets itself: set them through their fields instead. */
const MANAGED_FLAGS: Readonly<Record<string, string>> = {
  "-H": "socket",
  "--host": "socket",
  "--data-root": "dataRoot",
  "-g": "dataRoot",
  "--graph": "dataRoot",
  "--exec-root": "execRoot",
  "--pidfile": "pidfile",
  "-p": "pidfile"
}

const ExtraFlag = Schema.String.pipe(
  Schema.filter((flag) => flag.startsWith("-") || `"${flag}" is not a flag (flags start with -)`),
  Schema.filter((flag) => {
    const name = flag.split("=")[0] ?? flag
    const field = MANAGED_FLAGS[name]
    return field === undefined || `${name} is set by the "${field}" setting; use that instead`
  }),
  Schema.filter((flag) => !flag.includes("\0") || "must not contain a NUL byte")
)

/**
 * Where the daemon's network lives.
 *
 * - `host`: the network namespace it is started in.
 * - `private`: a new, empty network namespace (`unshare --net`); it can never
 *   touch the host's bridges.
 * - `{ netns }`: an existing named namespace (`ip netns exec NAME`).
 *
 * @since 0.1.0
 * @category models
 */
export const NetworkNamespace = Schema.Union(
  Schema.Literal("host", "private"),
  Schema.Struct({
    netns: Schema.String.pipe(
      Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/, {
        message: () => "a netns name is 1-64 letters, digits, _ . or -"
      })
    )
  })
)

/**
 * The configuration of one Docker daemon.
 *
 * @since 0.1.0
 * @category models
 */
export class DockerdConfig extends Schema.Class<DockerdConfig>("DockerdConfig")({
  /** The dockerd binary: a name looked up on PATH, or a path. */
  binary: Schema.optionalWith(Schema.NonEmptyTrimmedString, { default: () => "dockerd" }),
  /** The unix socket the daemon listens on. */
  socket: Schema.optionalWith(SocketPath, { default: () => "/var/run/docker.sock" }),
  /** `--data-root`; dockerd's default when absent. */
  dataRoot: Schema.optional(AbsolutePath),
  /** `--exec-root`; dockerd's default when absent. */
  execRoot: Schema.optional(AbsolutePath),
  /** `--pidfile`; dockerd's default when absent. */
  pidfile: Schema.optional(AbsolutePath),
  /** The profile of flags. */
  profile: Schema.optionalWith(Profile, { default: () => "default" as const }),
  /** More flags, each one argv entry (`--log-level=debug`). */
  extraArgs: Schema.optionalWith(Schema.Array(ExtraFlag), { default: () => [] }),
  /** Where the daemon's network lives. */
  network: Schema.optionalWith(NetworkNamespace, { default: () => "host" as const }),
  /** Grace between SIGTERM and SIGKILL when the daemon is stopped. */
  stopGrace: Schema.optionalWith(Schema.DurationFromMillis, {
    default: () => Duration.seconds(10)
  }),
  /** The docker CLI, for probes through a process manager (`docker info`). */
  dockerCli: Schema.optionalWith(Schema.NonEmptyTrimmedString, { default: () => "docker" })
}) {
  /** The exec-root in effect (dockerd's default when not set). */
  get effectiveExecRoot(): string {
    return this.execRoot ?? "/var/run/docker"
  }

  /** The pidfile in effect (dockerd's default when not set). */
  get effectivePidfile(): string {
    return this.pidfile ?? "/var/run/docker.pid"
  }

  /** The data-root in effect (dockerd's default when not set). */
  get effectiveDataRoot(): string {
    return this.dataRoot ?? "/var/lib/docker"
  }
}

/**
 * What a caller may pass: the encoded form (durations in milliseconds).
 *
 * @since 0.1.0
 * @category models
 */
export type DockerdConfigInput = typeof DockerdConfig.Encoded

/**
 * Decodes a configuration, failing with {@link InvalidConfig} naming the
 * field and what is allowed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (input: unknown): Effect.Effect<DockerdConfig, InvalidConfig> =>
  Schema.decodeUnknown(DockerdConfig, { errors: "first", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      return new InvalidConfig({
        field: issue?.path.join(".") || "config",
        problem: issue?.message ?? error.message
      })
    })
  )

/**
 * The dockerd argv for a configuration, wrapped for its network namespace.
 *
 * @since 0.1.0
 * @category argv
 */
export const argv = (config: DockerdConfig): readonly [string, ...Array<string>] => {
  const dockerd: Array<string> = [
    `--host=unix://${config.socket}`,
    ...(config.dataRoot === undefined ? [] : [`--data-root=${config.dataRoot}`]),
    ...(config.execRoot === undefined ? [] : [`--exec-root=${config.execRoot}`]),
    ...(config.pidfile === undefined ? [] : [`--pidfile=${config.pidfile}`]),
    ...profileFlags[config.profile],
    ...config.extraArgs
  ]
  const network = config.network
  if (network === "host") return [config.binary, ...dockerd]
  if (network === "private") return ["unshare", "--net", "--", config.binary, ...dockerd]
  return ["ip", "netns", "exec", network.netns, config.binary, ...dockerd]
}
