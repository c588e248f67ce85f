/**
 * `sandbox.docker.volume`: named volumes of the Docker inside a sandbox.
 * Names, labels and drivers are checked before anything runs (names by
 * Schema, Docker's own rule; nothing that docker would read as an option),
 * and answers are read as JSON and decoded by Schema.
 *
 * A volume outlives the containers that use it (`run`'s `volumes:
 * ["name:/path"]`) until `rm`; all of them go with the sandbox.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { DockerDaemon } from "./Dockerd.js"
import {
  checked,
  DockerCommandFailed,
  DockerOutputInvalid,
  flag,
  InvalidDockerArgument,
  plain,
  runDocker
} from "./internal/dockerCommand.js"
import type { ProcessManagerShape } from "./ProcessManager.js"
import type { DockerUnavailable } from "./Sandbox.js"
import type { DockerError, DockerLoginFailed } from "./SandboxDocker.js"

/**
 * A volume name, by Docker's rule for local volumes: a letter or digit,
 * then at least one more of letters, digits, `_`, `.` and `-`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const VolumeName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]{1,254}$/),
  Schema.annotations({ identifier: "VolumeName" })
)

/**
 * A volume, as `docker volume inspect` describes it.
 *
 * @since 0.1.0
 * @category models
 */
export class VolumeInfo extends Schema.Class<VolumeInfo>("VolumeInfo")({
  Name: Schema.String,
  Driver: Schema.String,
  Mountpoint: Schema.String,
  Scope: Schema.optional(Schema.String),
  CreatedAt: Schema.optional(Schema.String),
  Labels: Schema.optionalWith(
    Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String })),
    { default: () => null }
  )
}) {}

/**
 * A volume as `docker volume ls` lists it.
 *
 * @since 0.1.0
 * @category models
 */
export class VolumeSummary extends Schema.Class<VolumeSummary>("VolumeSummary")({
  Name: Schema.String,
  Driver: Schema.String
}) {}

/**
 * No volume of that name in the sandbox's Docker.
 *
 * @since 0.1.0
 * @category errors
 */
export class VolumeNotFound extends Schema.TaggedError<VolumeNotFound>()("VolumeNotFound", {
  volume: Schema.String
}) {
  override get message(): string {
    return `no volume ${JSON.stringify(this.volume)} in the sandbox's Docker (volume ls lists them)`
  }
}

/**
 * The volume is used by a container, so it was not removed.
 *
 * @since 0.1.0
 * @category errors
 */
export class VolumeInUse extends Schema.TaggedError<VolumeInUse>()("VolumeInUse", {
  volume: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `volume ${JSON.stringify(this.volume)} is in use, so it was not removed (${this.reason}): remove the containers using it first, or pass force`
  }
}

/**
 * Every way a volume command fails.
 *
 * @since 0.1.0
 * @category errors
 */
export type VolumeError = DockerError | DockerOutputInvalid | VolumeNotFound | VolumeInUse

/**
 * The volume commands of a sandbox. Each runs to its end and answers.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxVolume {
  /** Creates a volume (an existing one of that name is kept); answers its name. */
  readonly create: (
    name: string,
    options?: {
      readonly labels?: Readonly<Record<string, string>>
      /** Default `local`. */
      readonly driver?: string
    }
  ) => Effect.Effect<string, VolumeError>
  readonly ls: () => Effect.Effect<ReadonlyArray<VolumeSummary>, VolumeError>
  readonly inspect: (name: string) => Effect.Effect<VolumeInfo, VolumeError>
  /** Removes a volume; one in use only with `force`. */
  readonly rm: (
    name: string,
    options?: { readonly force?: boolean }
  ) => Effect.Effect<void, VolumeError>
}

const LsLine = Schema.parseJson(VolumeSummary)
const InspectAnswer = Schema.parseJson(Schema.Array(VolumeInfo))

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/

/**
 * The volume commands for a sandbox's process manager.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  manager: ProcessManagerShape,
  ready: Effect.Effect<DockerDaemon, DockerUnavailable | DockerLoginFailed>
): SandboxVolume => {
  const volumeName = (value: string) =>
    checked(
      VolumeName,
      "volume",
      value,
      "is not a volume name: a letter or digit, then at least one more of letters, digits, _ . and -"
    )

  /** `docker volume ARGS` to its end: stdout, or the failure read for a known cause. */
  const volume = (args: ReadonlyArray<string>, name?: string) =>
    Effect.scoped(
      Effect.flatMap(runDocker(manager, ready, ["volume", ...args]), (command) => command.output)
    ).pipe(
      Effect.map((output) => output.stdout),
      Effect.catchIf(
        (error): error is DockerCommandFailed => error instanceof DockerCommandFailed,
        (error): Effect.Effect<never, DockerCommandFailed | VolumeNotFound | VolumeInUse> => {
          const said = error.stderrTail.join("\n")
          if (name !== undefined && /no such volume/i.test(said))
            return Effect.fail(new VolumeNotFound({ volume: name }))
          if (name !== undefined && /volume is in use/i.test(said))
            return Effect.fail(
              new VolumeInUse({
                volume: name,
                reason: error.stderrTail.find((line) => /in use/i.test(line))?.trim() ?? said
              })
            )
          return Effect.fail(error)
        }
      ),
      Effect.withSpan("SandboxVolume.volume", { attributes: { command: args[0] } })
    )

  const decode =
    <A>(schema: Schema.Schema<A, string>, argv: ReadonlyArray<string>) =>
    (text: string) =>
      Schema.decodeUnknown(schema)(text).pipe(
        Effect.mapError(
          (error) =>
            new DockerOutputInvalid({
              argv: ["docker", "volume", ...argv],
              problem: error.message.split("\n").slice(-1)[0] ?? error.message
            })
        )
      )

  return {
    create: (name, options = {}) =>
      Effect.gen(function* () {
        const args = ["create"]
        if (options.driver !== undefined)
          args.push("--driver", yield* plain("driver", options.driver))
        for (const [key, value] of Object.entries(options.labels ?? {})) {
          if (!LABEL_KEY.test(key))
            return yield* new InvalidDockerArgument({
              argument: "label",
              value: key,
              problem:
                "is not a label key: letters, digits, . _ / and -, starting with a letter or digit"
            })
          if (value.includes("\0"))
            return yield* new InvalidDockerArgument({
              argument: "label",
              value: key,
              problem: "has a value with a NUL byte"
            })
          args.push("--label", `${key}=${value}`)
        }
        const valid = yield* volumeName(name)
        const created = yield* volume([...args, valid], valid)
        return created.trim() === "" ? valid : created.trim()
      }),
    ls: () =>
      Effect.gen(function* () {
        const argv = ["ls", "--format", "{{json .}}"]
        const stdout = yield* volume(argv)
        const lines = stdout.split("\n").filter((line) => line.trim() !== "")
        return yield* Effect.forEach(lines, decode(LsLine, argv))
      }),
    inspect: (name) =>
      Effect.gen(function* () {
        const valid = yield* volumeName(name)
        const argv = ["inspect", valid]
        const found = yield* Effect.flatMap(volume(argv, valid), decode(InspectAnswer, argv))
        const first = found[0]
        if (first === undefined) return yield* new VolumeNotFound({ volume: valid })
        return first
      }),
    rm: (name, options = {}) =>
      Effect.gen(function* () {
        const valid = yield* volumeName(name)
        yield* volume(["rm", ...flag(options.force, "--force"), valid], valid)
      })
  }
}
