/**
 * The settings a local dockerd runs with, from its flags, then its config
 * file, then dockerd's defaults: what the preflight checks, the stop cleans
 * up and the containerd probe looks at. Without a daemon (the real stop
 * under a config file's directories is in `dockerd.real.test.ts`).
 */
import { existsSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as DockerdConfig from "../src/DockerdConfig.js"
import * as DockerdSettings from "../src/DockerdSettings.js"
import * as Preflight from "../src/Preflight.js"
import { removeDir, tempDir } from "./support/isolated.js"

const config = (input: DockerdConfig.DockerdConfigInput) =>
  Schema.decodeUnknownSync(DockerdConfig.DockerdConfig)(input)

/** Runs `body` with a temp dir holding `daemon.json` with `json` (text as is). */
const withConfigFile = <A, E>(
  json: unknown,
  body: (file: string, dir: string) => Effect.Effect<A, E>
) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const dir = tempDir()
      const file = Path.join(dir, "daemon.json")
      writeFileSync(file, typeof json === "string" ? json : JSON.stringify(json))
      return { dir, file }
    }),
    ({ dir, file }) => body(file, dir),
    ({ dir }) => Effect.sync(() => removeDir(dir))
  )

const managedOrSystem = (execRoot: string) =>
  existsSync(DockerdSettings.SYSTEM_CONTAINERD)
    ? DockerdSettings.SYSTEM_CONTAINERD
    : `${execRoot}/containerd/containerd.sock`

describe("the directories and pidfile dockerd uses", () => {
  it.effect("the config file's, when the configuration leaves them unset", () =>
    withConfigFile(
      { "data-root": "/srv/sd/data", "exec-root": "/srv/sd/run", pidfile: "/srv/sd/d.pid" },
      (file) =>
        Effect.gen(function* () {
          const settings = yield* DockerdSettings.resolve(
            config({ extraArgs: [`--config-file=${file}`] })
          )
          expect(settings).toMatchObject({
            configFile: file,
            dataRoot: "/srv/sd/data",
            execRoot: "/srv/sd/run",
            pidfile: "/srv/sd/d.pid"
          })
          expect(settings.containerdPidfile).toBe("/srv/sd/run/containerd/containerd.pid")
        })
    )
  )

  it.effect("the configuration's flags first", () =>
    withConfigFile(
      { "data-root": "/srv/sd/data", "exec-root": "/srv/sd/run", pidfile: "/srv/sd/d.pid" },
      (file) =>
        Effect.gen(function* () {
          const settings = yield* DockerdSettings.resolve(
            config({
              dataRoot: "/srv/mine/data",
              execRoot: "/srv/mine/exec",
              pidfile: "/srv/mine/d.pid",
              extraArgs: [`--config-file=${file}`]
            })
          )
          expect(settings).toMatchObject({
            dataRoot: "/srv/mine/data",
            execRoot: "/srv/mine/exec",
            pidfile: "/srv/mine/d.pid"
          })
        })
    )
  )

  it.effect("dockerd's defaults when neither says; a missing or broken file is passed over", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      try {
        const expected = {
          dataRoot: DockerdSettings.defaults.dataRoot,
          execRoot: DockerdSettings.defaults.execRoot,
          pidfile: DockerdSettings.defaults.pidfile
        }
        const missing = `${dir}/missing.json`
        expect(
          yield* DockerdSettings.resolve(config({ extraArgs: [`--config-file=${missing}`] }))
        ).toMatchObject({ configFile: missing, ...expected })
        for (const text of ["{ not json", "[]", '"text"', '{ "data-root": 5 }']) {
          writeFileSync(`${dir}/broken.json`, text)
          expect(
            yield* DockerdSettings.resolve(
              config({ extraArgs: [`--config-file=${dir}/broken.json`] })
            )
          ).toMatchObject(expected)
        }
        // Without --config-file: dockerd's own file.
        expect((yield* DockerdSettings.resolve(config({}))).configFile).toBe(
          "/etc/docker/daemon.json"
        )
      } finally {
        removeDir(dir)
      }
    })
  )

  it.effect(
    "a config file's data-root or exec-root the stop could not safely clean is InvalidConfig naming the file",
    () =>
      Effect.gen(function* () {
        for (const [name, value, problem] of [
          ["exec-root", "/tmp", /top-level directory/],
          ["data-root", "/", /root directory/],
          ["data-root", "relative/data", /absolute path/],
          ["pidfile", "docker.pid", /absolute path/]
        ] as const) {
          const error = yield* withConfigFile({ [name]: value }, (file) =>
            Effect.flip(DockerdSettings.resolve(config({ extraArgs: [`--config-file=${file}`] })))
          )
          expect(error._tag).toBe("InvalidConfig")
          expect(error.field).toMatch(new RegExp(`^"${name}" in /tmp/.+/daemon\\.json$`))
          expect(error.problem).toMatch(problem)
          expect(error.problem).toContain(
            `leaves ${name} unset, so dockerd takes it from this file`
          )
        }
      })
  )

  it.effect("the preflight checks the config file's pidfile", () =>
    withConfigFile({}, (file, dir) =>
      Effect.gen(function* () {
        // A live process (not this one, which the check passes over).
        writeFileSync(`${dir}/docker.pid`, String(process.ppid))
        writeFileSync(
          file,
          JSON.stringify({
            pidfile: `${dir}/docker.pid`,
            "data-root": `${dir}/data`,
            "exec-root": `${dir}/exec`
          })
        )
        const input = config({
          binary: process.execPath,
          socket: `${dir}/docker.sock`,
          extraArgs: [`--config-file=${file}`]
        })
        const error = yield* Effect.flip(
          Preflight.run(input, yield* DockerdSettings.resolve(input))
        )
        expect(error).toMatchObject({
          _tag: "PidfileInUse",
          pidfile: `${dir}/docker.pid`,
          pid: process.ppid
        })
      })
    )
  )
})

describe("a setting both a flag and the config file give (dockerd refuses to start)", () => {
  /** Preflight on `input` with a config file holding `json`, in a temp dir of its own. */
  const preflightWith = (json: unknown, input: DockerdConfig.DockerdConfigInput = {}) =>
    withConfigFile(json, (file, dir) =>
      Effect.gen(function* () {
        const checked = config({
          binary: process.execPath,
          socket: `${dir}/docker.sock`,
          dataRoot: `${dir}/data`,
          execRoot: `${dir}/exec`,
          pidfile: `${dir}/docker.pid`,
          ...input,
          extraArgs: [...(input.extraArgs ?? []), `--config-file=${file}`]
        })
        return yield* Effect.either(Preflight.run(checked, yield* DockerdSettings.resolve(checked)))
      })
    )

  it.effect(
    "is refused before the spawn, naming the setting, the file, the flag and what to do",
    () =>
      Effect.gen(function* () {
        // The flags every configuration passes meet a machine's own daemon.json.
        for (const [json, input, setting, flag] of [
          [{ iptables: false }, {}, "iptables", "--iptables=false"],
          [{ hosts: ["unix:///var/run/docker.sock"] }, {}, "hosts", "--host=unix://"],
          [
            { "storage-driver": "overlay2" },
            { profile: "sandbox" },
            "storage-driver",
            "--storage-driver=vfs"
          ],
          [{ "data-root": "/srv/other" }, {}, "data-root", "--data-root="],
          [
            { "log-level": "warn" },
            { extraArgs: ["--log-level=debug"] },
            "log-level",
            "--log-level=debug"
          ],
          [{ labels: ["a=b"] }, { extraArgs: ["--label=c=d"] }, "labels", "--label=c=d"]
        ] as const) {
          const outcome = yield* preflightWith(json, input)
          expect(Either.isLeft(outcome), setting).toBe(true)
          const error = Either.getLeft(outcome).pipe(Option.getOrThrow)
          expect(error._tag).toBe("InvalidConfig")
          if (error._tag !== "InvalidConfig") continue
          expect(error.field).toMatch(new RegExp(`^"${setting}" in /tmp/.+/daemon\\.json$`))
          expect(error.problem).toContain(`also given as ${flag}`)
          expect(error.problem).toContain("--config-file=PATH")
        }
      })
  )

  it.effect("settings only the file gives pass", () =>
    Effect.gen(function* () {
      const outcome = yield* preflightWith({
        debug: true,
        "log-level": "warn",
        runtimes: { other: { path: "runc" } }
      })
      expect(Either.isRight(outcome)).toBe(true)
    })
  )
})

describe("where dockerd's containerd listens", () => {
  const addressOf = (input: DockerdConfig.DockerdConfigInput) =>
    Effect.flatMap(DockerdSettings.resolve(config(input)), DockerdSettings.containerdAddress).pipe(
      Effect.provide(NodeFileSystem.layer)
    )

  it.effect("--containerd wins, with or without unix://", () =>
    Effect.gen(function* () {
      expect(yield* addressOf({ extraArgs: ["--containerd=unix:///run/x/c.sock"] })).toBe(
        "/run/x/c.sock"
      )
      expect(yield* addressOf({ extraArgs: ["--containerd=/run/y.sock"] })).toBe("/run/y.sock")
    })
  )

  it.effect(
    "then the config file's `containerd`; an unreadable or broken file is passed over",
    () =>
      withConfigFile({ containerd: "unix:///run/z.sock", debug: true }, (file, dir) =>
        Effect.gen(function* () {
          const withFile = { execRoot: "/srv/sd/exec", extraArgs: [`--config-file=${file}`] }
          expect(yield* addressOf(withFile)).toBe("/run/z.sock")
          writeFileSync(file, "{ not json")
          expect(yield* addressOf(withFile)).toBe(managedOrSystem("/srv/sd/exec"))
          expect(
            yield* addressOf({
              execRoot: "/srv/sd/exec",
              extraArgs: [`--config-file=${dir}/missing.json`]
            })
          ).toBe(managedOrSystem("/srv/sd/exec"))
        })
      )
  )

  it.effect("under the config file's `exec-root` when the configuration sets none", () =>
    withConfigFile({ "exec-root": "/srv/sd/run" }, (file) =>
      Effect.gen(function* () {
        expect(yield* addressOf({ extraArgs: [`--config-file=${file}`] })).toBe(
          managedOrSystem("/srv/sd/run")
        )
        expect(
          yield* addressOf({ execRoot: "/srv/sd/exec", extraArgs: [`--config-file=${file}`] })
        ).toBe(managedOrSystem("/srv/sd/exec"))
      })
    )
  )
})
