/**
 * The configuration of one Docker daemon, as a Schema: binary, socket (its
 * mode and group), data-root, exec-root, pidfile, a profile of flags, extra
 * flags, an optional TCP listener (TLS unless explicitly allowed without),
 * and the daemon's environment (values may be secret). The command line is
 * built as argv, never through a shell: every value is one argv element or
 * the value of one `--flag=`.
 *
 * @since 0.1.0
 */
import * as Path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { InvalidConfig } from "./errors.js"
import { boundedDuration } from "./internal/duration.js"
import { redactText, secretsIn } from "./Redaction.js"

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
  message: (issue) => ({
    message: `${JSON.stringify(issue.actual) ?? String(issue.actual)} is not a profile; use one of default, sandbox, gvisor`,
    override: true
  })
})

/**
 * @since 0.1.0
 * @category profiles
 */
export type Profile = typeof Profile.Type

/** The longest path a unix socket address can hold on Linux. */
const MAX_SOCKET_PATH_BYTES = 107

const NoNul = Schema.String.pipe(
  Schema.filter((text) => !text.includes("\0") || "must not contain a NUL byte")
)

/**
 * An absolute path without a NUL byte.
 *
 * @since 0.1.0
 * @category models
 */
export const AbsolutePath = Schema.String.pipe(
  Schema.filter((path) => path.startsWith("/") || "must be an absolute path (starting with /)"),
  Schema.filter((path) => !path.includes("\0") || "must not contain a NUL byte")
)

/**
 * A directory the daemon owns alone: the stop waits for (and kills) every
 * process whose command line mentions the exec-root, and unmounts what the
 * daemon mounted under the exec-root and the data-root, so neither may be
 * `/` or a top-level directory such as `/tmp`.
 *
 * @since 0.1.0
 * @category models
 */
export const OwnDirectory = AbsolutePath.pipe(
  Schema.filter((path) => {
    const depth = Path.posix
      .normalize(path)
      .split("/")
      .filter((part) => part.length > 0).length
    return (
      depth >= 2 ||
      `"${path}" is ${depth === 0 ? "the root directory" : "a top-level directory"}; the stop cleans up every process and mount under it, so give the daemon a directory of its own, like /tmp/sandbox-docker/data`
    )
  })
)

/** A program: a name looked up on PATH, or a path; never a flag. */
const Program = Schema.NonEmptyTrimmedString.pipe(
  Schema.filter((name) => !name.includes("\0") || "must not contain a NUL byte"),
  Schema.filter((name) => !name.startsWith("-") || `"${name}" is a flag, not a program`)
)

/**
 * A unix socket path: absolute, no NUL byte, at most 107 bytes.
 *
 * @since 0.1.0
 * @category models
 */
export const SocketPath = AbsolutePath.pipe(
  Schema.filter(
    (path) =>
      Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES ||
      `is ${Buffer.byteLength(path)} bytes long; a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}`
  )
)

/**
 * Flags the configuration sets itself: set them through their fields
 * instead. A TCP listener in particular only comes from `tcp`, so that it
 * gets TLS (or an explicit `allowInsecureTcp`).
 */
const MANAGED_FLAGS: Readonly<Record<string, string>> = {
  "-H": "socket",
  "--host": "socket",
  "--data-root": "dataRoot",
  "-g": "dataRoot",
  "--graph": "dataRoot",
  "--exec-root": "execRoot",
  "--pidfile": "pidfile",
  "-p": "pidfile",
  "-G": "socketGroup",
  "--group": "socketGroup",
  "--tls": "tcp",
  "--tlsverify": "tcp",
  "--tlscacert": "tcp",
  "--tlscert": "tcp",
  "--tlskey": "tcp"
}

/** dockerd's one-letter flags that take no value (they may be grouped: `-Dv`). */
const BOOLEAN_SHORTHANDS = new Set(["D", "h", "v"])

/**
 * The managed flag an argument sets, if any. Short flags are read the way
 * dockerd's parser reads them: grouped (`-DH`) and with the value attached
 * (`-Htcp://…`), so neither form slips through.
 */
const managedFlagOf = (flag: string): string | undefined => {
  if (flag.startsWith("--")) {
    const name = flag.split("=")[0] ?? flag
    return MANAGED_FLAGS[name] === undefined ? undefined : name
  }
  for (const letter of flag.slice(1)) {
    if (MANAGED_FLAGS[`-${letter}`] !== undefined) return `-${letter}`
    // Any other letter takes a value: the rest of the argument is that value.
    if (!BOOLEAN_SHORTHANDS.has(letter)) return undefined
  }
  return undefined
}

const ExtraFlag = Schema.String.pipe(
  Schema.filter((flag) => flag.startsWith("-") || `"${flag}" is not a flag (flags start with -)`),
  Schema.filter((flag) => {
    const name = managedFlagOf(flag)
    return (
      name === undefined ||
      `${name} is set by the "${MANAGED_FLAGS[name]}" setting; use that instead`
    )
  }),
  Schema.filter((flag) => !flag.includes("\0") || "must not contain a NUL byte")
)

/** `HOST:PORT` with an IPv4 address, a host name or a bracketed IPv6 address. */
const TCP_ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(\d{1,5})$/

/**
 * Where a TCP listener listens: `HOST:PORT`, for example `127.0.0.1:2376`.
 *
 * @since 0.1.0
 * @category models
 */
export const TcpAddress = Schema.String.pipe(
  Schema.filter((address) => {
    const usage = "write it as HOST:PORT, like 127.0.0.1:2376"
    if (address.startsWith("tcp://")) return `"${address}": ${usage}, without tcp://`
    const match = TCP_ADDRESS.exec(address)
    if (match === null) return `"${address}" is not an address: ${usage}`
    const port = Number(match[3])
    return (port >= 1 && port <= 65_535) || `port ${match[3]} is not between 1 and 65535`
  })
)

/**
 * The TLS files of a TCP listener: clients must present a certificate signed
 * by `ca` (dockerd's `--tlsverify`).
 *
 * @since 0.1.0
 * @category models
 */
export class TlsFiles extends Schema.Class<TlsFiles>("TlsFiles")({
  /** The CA that signs client certificates (`--tlscacert`). */
  ca: AbsolutePath,
  /** The daemon's certificate (`--tlscert`). */
  cert: AbsolutePath,
  /** The daemon's private key (`--tlskey`). */
  key: AbsolutePath
}) {}

/**
 * A TCP listener besides the unix socket. Without `tls` it is refused unless
 * the configuration sets `allowInsecureTcp: true`: anyone who can reach an
 * unauthenticated Docker port is root on the machine.
 *
 * @since 0.1.0
 * @category models
 */
export class TcpListener extends Schema.Class<TcpListener>("TcpListener")({
  address: TcpAddress,
  tls: Schema.optional(TlsFiles)
}) {}

/**
 * The mode of the unix socket, as octal digits in a string (`"0660"`): who
 * may talk to the daemon (and so be root on the machine).
 *
 * @since 0.1.0
 * @category models
 */
export const SocketMode = Schema.transformOrFail(
  Schema.String.annotations({ message: () => `a mode is octal digits in a string, like "0660"` }),
  Schema.Int,
  {
    strict: true,
    decode: (text, _, ast) => {
      const match = /^(?:0o?)?([0-7]{3})$/.exec(text.trim())
      if (match === null) {
        return ParseResult.fail(
          new ParseResult.Type(
            ast,
            text,
            `"${text}" is not a mode: use octal digits like 0660 (owner and group) or 0600 (owner only)`
          )
        )
      }
      const mode = Number.parseInt(match[1] ?? "", 8)
      return (mode & 0o600) === 0o600
        ? ParseResult.succeed(mode)
        : ParseResult.fail(
            new ParseResult.Type(
              ast,
              text,
              `${text} does not let the owner read and write the socket; use 0600, 0660 or wider`
            )
          )
    },
    encode: (mode) => ParseResult.succeed(`0${mode.toString(8)}`)
  }
)

/**
 * The group that owns the unix socket: a group name or a numeric gid.
 *
 * @since 0.1.0
 * @category models
 */
export const SocketGroup = Schema.String.pipe(
  Schema.pattern(/^([A-Za-z_][A-Za-z0-9_.-]{0,31}|\d{1,10})$/, {
    message: () => "a group is a name (letters, digits, _ . -, up to 32) or a numeric gid"
  })
)

/**
 * A secret value in a configuration: `{ secret: "…" }` in JSON, or a
 * `Redacted` in code. It is passed to dockerd and shown nowhere.
 */
const SecretValue = Schema.Union(
  Schema.RedactedFromSelf(NoNul),
  Schema.transform(Schema.Struct({ secret: NoNul }), Schema.RedactedFromSelf(Schema.String), {
    strict: true,
    decode: ({ secret }) => Redacted.make(secret),
    encode: (secret) => ({ secret: Redacted.value(secret) })
  })
)

/**
 * The value of an environment variable: text, or a secret.
 *
 * @since 0.1.0
 * @category models
 */
export const EnvValue = Schema.Union(NoNul, SecretValue).annotations({
  // Never the value itself in a message: it may be a secret.
  message: () => ({
    message: 'an environment value is a string without NUL bytes, or { secret: "…" } for a secret',
    override: true
  })
})

const EnvName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]{0,254}$/, {
    message: () =>
      "an environment variable name is letters, digits and _, not starting with a digit"
  })
)

/**
 * Where the daemon's network lives.
 *
 * - `host`: the network namespace it is started in.
 * - `private`: a new, empty network namespace (`unshare --net`); it can never
 *   touch the host's bridges.
 * - `{ netns }`: an existing named namespace (`ip netns add NAME`), entered
 *   with `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which mounts a
 *   new /sys and so hides the cgroup hierarchy dockerd needs).
 *
 * @since 0.1.0
 * @category models
 */
export const NetworkNamespace = Schema.Union(
  Schema.Literal("host", "private"),
  Schema.Struct({
    netns: Schema.String.pipe(
      Schema.pattern(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, {
        message: () => "a netns name is 1-64 letters, digits, _ . or -"
      })
    )
  })
).annotations({
  message: (issue) => ({
    message: `${JSON.stringify(issue.actual) ?? String(issue.actual)} is not a network: use "host", "private" or { netns: NAME } (NAME: 1-64 letters, digits, _ . or -)`,
    override: true
  })
})

/** The longest stop grace accepted: one day. */
const MAX_STOP_GRACE = Duration.hours(24)

const StopGrace = boundedDuration("a stop grace", MAX_STOP_GRACE, "24h")

const fields = {
  /** The dockerd binary: a name looked up on PATH, or a path. */
  binary: Schema.optionalWith(Program, { default: () => "dockerd" }),
  /** The unix socket the daemon listens on. */
  socket: Schema.optionalWith(SocketPath, { default: () => "/var/run/docker.sock" }),
  /**
   * The mode of the socket, as octal digits (`"0660"`, the default: owner
   * and group only). After ready the socket is given this mode if dockerd
   * did not.
   */
  socketMode: Schema.optionalWith(SocketMode, { default: () => 0o660 }),
  /** The group of the socket (dockerd's `--group`); dockerd's default when absent. */
  socketGroup: Schema.optional(SocketGroup),
  /**
   * A TCP listener besides the socket (`--host=tcp://…`, with `--tlsverify`
   * and the TLS files).
   */
  tcp: Schema.optional(TcpListener),
  /** Allow `tcp` without TLS: anyone who reaches the port is root here. */
  allowInsecureTcp: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** `--data-root`; when absent, dockerd's config file's or default (see `DockerdSettings`). */
  dataRoot: Schema.optional(OwnDirectory),
  /** `--exec-root`; when absent, dockerd's config file's or default (see `DockerdSettings`). */
  execRoot: Schema.optional(OwnDirectory),
  /** `--pidfile`; when absent, dockerd's config file's or default (see `DockerdSettings`). */
  pidfile: Schema.optional(AbsolutePath),
  /** The profile of flags. */
  profile: Schema.optionalWith(Profile, { default: () => "default" as const }),
  /** More flags, each one argv entry (`--log-level=debug`). */
  extraArgs: Schema.optionalWith(Schema.Array(ExtraFlag), { default: () => [] }),
  /** Where the daemon's network lives. */
  network: Schema.optionalWith(NetworkNamespace, { default: () => "host" as const }),
  /**
   * Grace between SIGTERM and SIGKILL when the daemon is stopped, at most
   * 24h: a `Duration`, milliseconds, `"10 seconds"` or `"10s"`.
   */
  stopGrace: Schema.optionalWith(StopGrace, {
    default: () => Duration.seconds(10)
  }),
  /** The docker CLI, for probes through a process manager (`docker info`). */
  dockerCli: Schema.optionalWith(Program, { default: () => "docker" }),
  /**
   * More environment for dockerd (for example `HTTPS_PROXY`). A value given
   * as `{ secret: "…" }` (or a `Redacted`) reaches dockerd's environment and
   * nothing else: not its argv, not a log, an event or an error.
   */
  env: Schema.optionalWith(Schema.Record({ key: EnvName, value: EnvValue }), {
    default: () => ({})
  })
}

/**
 * The cross-field rules: a TCP listener has TLS, unless insecure TCP is
 * explicitly allowed; and it must be reachable.
 */
const checkTcp = (config: Schema.Struct.Type<typeof fields>) => {
  const tcp = config.tcp
  if (tcp === undefined) return true
  if (config.network === "private") {
    return {
      path: ["tcp"],
      message: `a TCP listener in a private network namespace (network: "private") is reachable from nowhere; use network "host" or a named netns`
    }
  }
  if (tcp.tls !== undefined || config.allowInsecureTcp) return true
  return {
    path: ["tcp"],
    message: `a TCP listener without TLS (${tcp.address}) lets anyone who reaches it control the daemon, that is be root on this machine; give tcp.tls { ca, cert, key } (CLI: --tls-ca, --tls-cert, --tls-key), or set allowInsecureTcp: true (CLI: --insecure-tcp) to accept that`
  }
}

/**
 * The configuration of one Docker daemon.
 *
 * @since 0.1.0
 * @category models
 */
export class DockerdConfig extends Schema.Class<DockerdConfig>("DockerdConfig")(
  Schema.Struct(fields).pipe(Schema.filter(checkTcp))
) {}

/**
 * What a caller may pass: the encoded form (a duration as any
 * `Duration.DurationInput`, modes as octal text, secrets as `Redacted` or
 * `{ secret }`).
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
      // A message may quote the value it refused (as JSON, too): never a secret.
      const secrets = secretsIn(input).flatMap((secret) => [
        secret,
        JSON.stringify(secret).slice(1, -1)
      ])
      return new InvalidConfig({
        field: redactText(issue?.path.join(".") || "config", secrets),
        problem: redactText(issue?.message ?? error.message, secrets)
      })
    }),
    // Whatever is thrown while decoding is a bad input, not a crash.
    Effect.catchAllDefect((defect) =>
      Effect.fail(
        new InvalidConfig({
          field: "config",
          problem: redactText(`cannot be read: ${String(defect)}`, secretsIn(input))
        })
      )
    )
  )

/**
 * The flags dockerd is given for a configuration (its arguments, without
 * the binary or the network namespace's wrapper).
 *
 * @since 0.1.0
 * @category argv
 */
export const flags = (config: DockerdConfig): ReadonlyArray<string> => {
  const tcp = config.tcp
  return [
    `--host=unix://${config.socket}`,
    ...(config.socketGroup === undefined ? [] : [`--group=${config.socketGroup}`]),
    ...(tcp === undefined ? [] : [`--host=tcp://${tcp.address}`]),
    ...(tcp?.tls === undefined
      ? []
      : [
          "--tlsverify",
          `--tlscacert=${tcp.tls.ca}`,
          `--tlscert=${tcp.tls.cert}`,
          `--tlskey=${tcp.tls.key}`
        ]),
    ...(config.dataRoot === undefined ? [] : [`--data-root=${config.dataRoot}`]),
    ...(config.execRoot === undefined ? [] : [`--exec-root=${config.execRoot}`]),
    ...(config.pidfile === undefined ? [] : [`--pidfile=${config.pidfile}`]),
    ...profileFlags[config.profile],
    ...config.extraArgs
  ]
}

/**
 * The dockerd argv for a configuration, wrapped for its network namespace.
 *
 * @since 0.1.0
 * @category argv
 */
export const argv = (config: DockerdConfig): readonly [string, ...Array<string>] => {
  const dockerd = flags(config)
  const network = config.network
  if (network === "host") return [config.binary, ...dockerd]
  if (network === "private") return ["unshare", "--net", "--", config.binary, ...dockerd]
  return ["nsenter", `--net=/run/netns/${network.netns}`, "--", config.binary, ...dockerd]
}
