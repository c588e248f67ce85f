/**
 * The settings a local dockerd will really run with, resolved once before
 * it starts: its flags first, then its config file (`--config-file`, else
 * `/etc/docker/daemon.json`), then dockerd's defaults. A `DockerdConfig`
 * leaves a setting unset to mean "dockerd decides", and dockerd may take it
 * from the config file; everything that looks at the daemon's directories
 * from outside (the preflight checks, the mount snapshot, the stop's
 * cleanup of processes, mounts and the pidfile, the containerd probe) looks
 * at these. `conflictOf` finds a setting the config file gives that a flag
 * gives too, which dockerd refuses.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { readFile } from "node:fs/promises"
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
  /** The settings the config file gives, by name (none when it cannot be read). */
  readonly fileKeys: ReadonlyArray<string>
  /**
   * `--live-restore` (flag, then config file): containers keep running
   * while dockerd is down, so neither a stop nor the clean-up of a killed
   * daemon may kill them or undo their mounts.
   */
  readonly liveRestore: boolean
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
 * A config file: a JSON object. Its values are dockerd's business; of
 * those, only the settings that say where the daemon keeps its things are
 * read, and only when they are strings.
 */
const ConfigFile = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
const decodeConfigFile = Schema.decodeUnknownOption(ConfigFile)

/** A string setting of a config file. */
const textIn = (file: Readonly<Record<string, unknown>> | undefined, key: string) => {
  const value = file?.[key]
  return typeof value === "string" ? value : undefined
}

/** The value of `--name=value` among the extra flags (the last one wins). */
const flagValue = (flags: ReadonlyArray<string>, name: string): string | undefined => {
  const prefix = `--${name}=`
  for (let i = flags.length - 1; i >= 0; i--) {
    const flag = flags[i]!
    if (flag.startsWith(prefix)) return flag.slice(prefix.length)
  }
  return undefined
}

/**
 * `--live-restore` among the extra flags, as dockerd reads a boolean flag
 * (`--live-restore`, `--live-restore=true|false|1|0`; the last one wins);
 * `undefined` when none is given.
 */
const liveRestoreFlag = (flags: ReadonlyArray<string>): boolean | undefined => {
  for (let i = flags.length - 1; i >= 0; i--) {
    const flag = flags[i]!
    if (flag === "--live-restore") return true
    if (flag.startsWith("--live-restore=")) {
      return ["true", "1", "t", "T", "TRUE", "True"].includes(flag.slice("--live-restore=".length))
    }
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
  const text = yield* Effect.promise(() =>
    readFile(configFileOf(config), "utf8").catch(() => undefined)
  )
  return yield* fromConfigFile(config, text)
})

/**
 * The config file dockerd reads for `config`: its `--config-file` flag, else
 * the default.
 *
 * @since 0.1.0
 * @category constructors
 */
export const configFileOf = (config: DockerdConfig): string =>
  flagValue(config.extraArgs, "config-file") ?? defaults.configFile

/**
 * The settings dockerd will run with for `config`, given the text of its
 * config file (`undefined` when there is none): {@link resolve} without
 * reading the machine, for a caller that reads the file its own way (a
 * test's file system).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromConfigFile = Effect.fnUntraced(function* (
  config: DockerdConfig,
  text: string | undefined
) {
  const configFile = configFileOf(config)
  const file = Option.getOrUndefined(text === undefined ? Option.none() : decodeConfigFile(text))
  // A setting the configuration gives is a flag: the file's is not used (dockerd
  // refuses to start when both give it, and says so).
  const dataRoot =
    config.dataRoot ??
    (yield* checked(OwnDirectory, configFile, "data-root", textIn(file, "data-root")))
  const execRoot =
    config.execRoot ??
    (yield* checked(OwnDirectory, configFile, "exec-root", textIn(file, "exec-root")))
  const pidfile =
    config.pidfile ?? (yield* checked(AbsolutePath, configFile, "pidfile", textIn(file, "pidfile")))
  const containerd =
    flagValue(config.extraArgs, "containerd") || textIn(file, "containerd") || undefined
  const liveRestore = liveRestoreFlag(config.extraArgs) ?? file?.["live-restore"] === true
  return new DockerdSettings({
    configFile,
    dataRoot: dataRoot ?? defaults.dataRoot,
    execRoot: execRoot ?? defaults.execRoot,
    pidfile: pidfile ?? defaults.pidfile,
    containerd: containerd === undefined ? undefined : withoutScheme(containerd),
    fileKeys: file === undefined ? [] : Object.keys(file),
    liveRestore
  })
})

/**
 * Where the containerd of a dockerd with these settings listens, by
 * dockerd's own rules (20.10, `initContainerD`): the `containerd` setting,
 * else the system containerd when its socket exists now (on the
 * `FileSystem`), else the containerd dockerd starts itself under its
 * exec-root.
 *
 * @since 0.1.0
 * @category containerd
 */
export const containerdAddress = (
  settings: DockerdSettings
): Effect.Effect<string, never, FileSystem.FileSystem> =>
  settings.containerd !== undefined
    ? Effect.succeed(settings.containerd)
    : Effect.flatMap(FileSystem.FileSystem, (fs) =>
        fs.exists(SYSTEM_CONTAINERD).pipe(
          Effect.orElseSucceed(() => false),
          Effect.map((exists) =>
            exists ? SYSTEM_CONTAINERD : `${settings.execRoot}/containerd/containerd.sock`
          )
        )
      )

/**
 * The config file's name for the setting of a flag whose name differs
 * (dockerd's named options: `--host` is `hosts`); any other flag's setting
 * has the flag's name.
 */
const SETTING_OF_FLAG: Readonly<Record<string, string>> = {
  host: "hosts",
  H: "hosts",
  G: "group",
  g: "data-root",
  graph: "data-root",
  p: "pidfile",
  D: "debug",
  l: "log-level",
  label: "labels",
  "insecure-registry": "insecure-registries",
  "registry-mirror": "registry-mirrors",
  "storage-opt": "storage-opts",
  "log-opt": "log-opts",
  "exec-opt": "exec-opts",
  "add-runtime": "runtimes",
  "default-ulimit": "default-ulimits",
  "authorization-plugin": "authorization-plugins",
  "dns-opt": "dns-opts"
}

/**
 * A setting both a flag dockerd is given and its config file give: dockerd
 * refuses to start then, whatever the values (even equal ones), saying
 * "the following directives are specified both as a flag and in the
 * configuration file". The first such flag, if any.
 *
 * @since 0.1.0
 * @category config file
 */
export const conflictOf = (
  flags: ReadonlyArray<string>,
  settings: DockerdSettings
): { readonly flag: string; readonly setting: string } | undefined => {
  if (settings.fileKeys.length === 0) return undefined
  const inFile = new Set(settings.fileKeys)
  for (const flag of flags) {
    const name = flag.startsWith("--") ? flag.slice(2).split("=")[0]! : flag.slice(1, 2)
    // (Which file to read is no setting of the file.)
    if (name === "config-file") continue
    const setting = SETTING_OF_FLAG[name] ?? name
    if (inFile.has(setting)) return { flag, setting }
  }
  return undefined
}
