/**
 * The settings a local dockerd will really run with, resolved once before
 * it starts: its flags first, then its config file (`--config-file`, else
 * `/etc/docker/daemon.json`), then dockerd's defaults. A `DockerdConfig`
 * leaves a setting unset to mean "dockerd decides", and dockerd may take it
 * from the config file; everything that looks at the daemon's directories
 * from outside (the preflight checks, the mount snapshot, the stop's
 * cleanup of processes, mounts and the pidfile, the containerd probe) looks
 * at these.
 *
 * @since 0.1.0
 */
import { lstat, readFile } from "node:fs/promises"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { AbsolutePath, type DockerdConfig, OwnDirectory } from "./DockerdConfig.js"
import { InvalidConfig } from "./errors.js"

/**
 * The settings of one local dockerd.
 *
 * @since 0.1.0
 * @category models
 */
export class DockerdSettings extends Data.Class<{
  /** The config file dockerd reads (it may not exist). */
  readonly configFile: string
  /** `--data-root`: where images, containers and volumes are kept. */
  readonly dataRoot: string
  /** `--exec-root`: runtime state; the containerd dockerd starts lives under it. */
  readonly execRoot: string
  /** `--pidfile`. */
  readonly pidfile: string
  /** The `containerd` setting (flag, then config file), without `unix://`; none when unset. */
  readonly containerd: string | undefined
}> {
  /**
   * The pidfile of the containerd dockerd starts itself (under the exec-root).
   */
  get containerdPidfile(): string {
    return `${this.execRoot}/containerd/containerd.pid`
  }
}

/**
 * dockerd's defaults (20.10, Linux, as root).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  configFile: "/etc/docker/daemon.json",
  dataRoot: "/var/lib/docker",
  execRoot: "/var/run/docker",
  pidfile: "/var/run/docker.pid"
} as const

/**
 * The system containerd's socket, which dockerd uses when it exists and no
 * `containerd` setting says otherwise.
 *
 * @since 0.1.0
 * @category constants
 */
export const SYSTEM_CONTAINERD = "/run/containerd/containerd.sock"

/**
 * What is read of a config file: only the settings that say where the daemon
 * keeps its things. Anything else in it is dockerd's business.
 */
const ConfigFile = Schema.parseJson(
  Schema.Struct({
    "data-root": Schema.optional(Schema.String),
    "exec-root": Schema.optional(Schema.String),
    pidfile: Schema.optional(Schema.String),
    containerd: Schema.optional(Schema.String)
  })
)
const decodeConfigFile = Schema.decodeUnknownOption(ConfigFile)

/** The value of `--name=value` among the extra flags (the last one wins). */
const flagValue = (flags: ReadonlyArray<string>, name: string): string | undefined => {
  const prefix = `--${name}=`
  for (let i = flags.length - 1; i >= 0; i--) {
    const flag = flags[i]!
    if (flag.startsWith(prefix)) return flag.slice(prefix.length)
  }
  return undefined
}

const withoutScheme = (address: string) => address.replace(/^unix:\/\//, "")

/**
 * A value from the config file, held to the rule the same setting has in a
 * `DockerdConfig`: the stop kills every process naming the exec-root and
 * unmounts under it and the data-root, so the file may no more say `/tmp`
 * than the configuration may.
 */
const checked = (
  schema: Schema.Schema<string>,
  file: string,
  name: string,
  value: string | undefined
): Effect.Effect<string | undefined, InvalidConfig> =>
  value === undefined
    ? Effect.succeed(undefined)
    : Either.match(Schema.decodeUnknownEither(schema)(value), {
        onRight: Effect.succeed,
        onLeft: (error) =>
          Effect.fail(
            new InvalidConfig({
              field: `"${name}" in ${file}`,
              problem: `${ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.message ?? "is not allowed"} (the configuration leaves ${name} unset, so dockerd takes it from this file: change it there, or move it from there to the configuration)`
            })
          )
      })

/**
 * The settings dockerd will run with for `config`. A config file that
 * cannot be read or parsed is passed over (dockerd itself refuses to start
 * with it and says why); a data-root or exec-root in it that the stop could
 * not safely clean up (`/`, `/tmp`, a relative path) is an `InvalidConfig`
 * naming the file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = Effect.fn("DockerdSettings.resolve")(function* (config: DockerdConfig) {
  const configFile = flagValue(config.extraArgs, "config-file") ?? defaults.configFile
  const text = yield* Effect.promise(() => readFile(configFile, "utf8").catch(() => undefined))
  const file = Option.getOrUndefined(text === undefined ? Option.none() : decodeConfigFile(text))
  // A setting the configuration gives is a flag: the file's is not used (dockerd
  // refuses to start when both give it, and says so).
  const dataRoot =
    config.dataRoot ?? (yield* checked(OwnDirectory, configFile, "data-root", file?.["data-root"]))
  const execRoot =
    config.execRoot ?? (yield* checked(OwnDirectory, configFile, "exec-root", file?.["exec-root"]))
  const pidfile =
    config.pidfile ?? (yield* checked(AbsolutePath, configFile, "pidfile", file?.pidfile))
  const containerd = flagValue(config.extraArgs, "containerd") || file?.containerd || undefined
  return new DockerdSettings({
    configFile,
    dataRoot: dataRoot ?? defaults.dataRoot,
    execRoot: execRoot ?? defaults.execRoot,
    pidfile: pidfile ?? defaults.pidfile,
    containerd: containerd === undefined ? undefined : withoutScheme(containerd)
  })
})

/**
 * Where the containerd of a dockerd with these settings listens, by
 * dockerd's own rules (20.10, `initContainerD`): the `containerd` setting,
 * else the system containerd when its socket exists now, else the
 * containerd dockerd starts itself under its exec-root.
 *
 * @since 0.1.0
 * @category containerd
 */
export const containerdAddress = (settings: DockerdSettings): Effect.Effect<string> =>
  settings.containerd !== undefined
    ? Effect.succeed(settings.containerd)
    : Effect.promise(() =>
        lstat(SYSTEM_CONTAINERD).then(
          () => SYSTEM_CONTAINERD,
          () => `${settings.execRoot}/containerd/containerd.sock`
        )
      )
