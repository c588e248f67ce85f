/**
 * Where the containerd a dockerd uses listens, by dockerd's own rules
 * (20.10, `initContainerD`): the `containerd` setting (flag, then the
 * config file), else the system containerd when its socket exists, else
 * the containerd dockerd starts itself under its exec-root (flag, then the
 * config file's `exec-root`, then `/var/run/docker`).
 *
 * @internal
 */
import { lstat, readFile } from "node:fs/promises"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { DockerdConfig } from "../DockerdConfig.js"

/** The system containerd's socket, which dockerd uses when it exists. */
export const SYSTEM_CONTAINERD = "/run/containerd/containerd.sock"

/** dockerd's config file when none is given. */
const DEFAULT_CONFIG_FILE = "/etc/docker/daemon.json"

const DaemonJson = Schema.parseJson(
  Schema.Struct({
    containerd: Schema.optional(Schema.String),
    "exec-root": Schema.optional(Schema.String)
  })
)
const decodeDaemonJson = Schema.decodeUnknownOption(DaemonJson)

/** The value of `--name=value` among the extra flags. */
const flagValue = (flags: ReadonlyArray<string>, name: string): string | undefined => {
  const prefix = `--${name}=`
  for (let i = flags.length - 1; i >= 0; i--) {
    const flag = flags[i]!
    if (flag.startsWith(prefix)) return flag.slice(prefix.length)
  }
  return undefined
}

const withoutScheme = (address: string) => address.replace(/^unix:\/\//, "")

/** The config file dockerd reads, parsed; none when it cannot be read or parsed. */
const readDaemonJson = (config: DockerdConfig) =>
  Effect.map(
    Effect.promise(() =>
      readFile(flagValue(config.extraArgs, "config-file") ?? DEFAULT_CONFIG_FILE, "utf8").catch(
        () => undefined
      )
    ),
    (text) => (text === undefined ? Option.none() : decodeDaemonJson(text))
  )

/**
 * The exec-root dockerd uses: the setting's (a flag), else the config
 * file's, else dockerd's default. Under it, the containerd dockerd starts
 * itself keeps its socket and its pidfile.
 */
const execRootOf = (config: DockerdConfig, json: Option.Option<typeof DaemonJson.Type>): string =>
  config.execRoot ??
  Option.getOrUndefined(Option.flatMapNullable(json, (json) => json["exec-root"])) ??
  config.effectiveExecRoot

/**
 * The containerd socket of a dockerd started with `config`. A config file
 * that cannot be read or parsed is passed over here: dockerd itself refuses
 * to start with it, and says why.
 */
export const containerdAddress = (config: DockerdConfig): Effect.Effect<string> =>
  Effect.gen(function* () {
    const flag = flagValue(config.extraArgs, "containerd")
    if (flag !== undefined && flag !== "") return withoutScheme(flag)
    const json = yield* readDaemonJson(config)
    const setting = Option.flatMapNullable(json, (json) => json.containerd)
    if (Option.isSome(setting) && setting.value !== "") return withoutScheme(setting.value)
    const system = yield* Effect.promise(() =>
      lstat(SYSTEM_CONTAINERD).then(
        () => true,
        () => false
      )
    )
    if (system) return SYSTEM_CONTAINERD
    return `${execRootOf(config, json)}/containerd/containerd.sock`
  })

/**
 * The pidfile of the containerd a dockerd started with `config` runs
 * itself, under the same exec-root as its socket (see
 * {@link containerdAddress}).
 */
export const containerdPidfile = (config: DockerdConfig): Effect.Effect<string> =>
  Effect.map(
    readDaemonJson(config),
    (json) => `${execRootOf(config, json)}/containerd/containerd.pid`
  )
