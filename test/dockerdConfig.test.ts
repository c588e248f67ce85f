/**
 * A configuration's durations take what Effect's own APIs take
 * (`Duration.DurationInput`) and Go's text; a missing binary names where it
 * was looked for.
 */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as DockerdConfig from "../src/DockerdConfig.js"
import { DockerNotInstalled } from "../src/errors.js"
import { resolveExecutable } from "../src/internal/executable.js"
import { removeDir, tempDir } from "./support/isolated.js"

const graceOf = (stopGrace: unknown) =>
  DockerdConfig.decode({ stopGrace }).pipe(Effect.map((config) => config.stopGrace))

describe("stopGrace", () => {
  it.effect("takes a Duration, milliseconds, Effect's text and Go's text", () =>
    Effect.gen(function* () {
      for (const input of [
        Duration.seconds(10),
        10_000,
        "10 seconds",
        "10s",
        "10000ms",
        [10, 0],
        BigInt(10_000_000_000)
      ]) {
        const grace = yield* graceOf(input)
        expect(Duration.toMillis(grace), String(input)).toBe(10_000)
      }
      expect(Duration.toMillis(yield* graceOf("1.5 minutes"))).toBe(90_000)
      expect(Duration.toMillis(yield* graceOf("1m30s"))).toBe(90_000)
      expect(Duration.toMillis(yield* graceOf(0))).toBe(0)
      expect(Duration.toMillis(yield* graceOf("24 hours"))).toBe(86_400_000)
    })
  )

  it.effect("is 10 seconds when absent", () =>
    Effect.gen(function* () {
      const config = yield* DockerdConfig.decode({})
      expect(Duration.toMillis(config.stopGrace)).toBe(10_000)
    })
  )

  it.effect(
    "refuses negative, NaN, over 24h and text that is no duration, saying what it takes",
    () =>
      Effect.gen(function* () {
        for (const input of [
          -1,
          Number.NaN,
          Number.POSITIVE_INFINITY,
          86_400_001,
          "25h",
          "2 days",
          "-3 seconds",
          "NaN seconds",
          "10 parsecs",
          "",
          [1, -5],
          BigInt(-1),
          Duration.infinity,
          null,
          {}
        ]) {
          const error = yield* Effect.flip(graceOf(input))
          expect(error._tag, String(input)).toBe("InvalidConfig")
          expect(error.field).toBe("stopGrace")
          expect(error.problem).toContain('"10 seconds"')
        }
      })
  )

  it.effect("a configuration encodes and decodes back to itself", () =>
    Effect.gen(function* () {
      const config = yield* DockerdConfig.decode({ stopGrace: "3 seconds" })
      const encoded = Schema.encodeSync(DockerdConfig.DockerdConfig)(config)
      const again = yield* DockerdConfig.decode(encoded)
      expect(Duration.toMillis(again.stopGrace)).toBe(3_000)
    })
  )
})

describe("a binary that is not there", () => {
  it.effect("a path: searched is the path itself", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      try {
        const error = yield* Effect.flip(resolveExecutable("./bin/dockerd", "/usr/bin", dir))
        expect(error.searched).toEqual([Path.join(dir, "bin/dockerd")])
        mkdirSync(Path.join(dir, "bin"))
        writeFileSync(Path.join(dir, "bin/dockerd"), "#!/bin/sh\n")
        chmodSync(Path.join(dir, "bin/dockerd"), 0o644)
        const notExecutable = yield* Effect.flip(resolveExecutable(`${dir}/bin/dockerd`, undefined))
        expect(notExecutable.searched).toEqual([`${dir}/bin/dockerd`])
      } finally {
        removeDir(dir)
      }
    })
  )

  it.effect("a name: searched is the PATH's directories", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        resolveExecutable("no-such-dockerd", "/nowhere/a::/nowhere/b")
      )
      expect(error.searched).toEqual(["/nowhere/a", "/nowhere/b"])
    })
  )

  it("DockerNotInstalled's message says what was looked at, and no CLI flag of its own", () => {
    const path = new DockerNotInstalled({
      binary: "/opt/dockerd",
      searched: ["/opt/dockerd"],
      hint: ""
    })
    expect(path.message).toBe(
      'Docker is not installed: "/opt/dockerd" does not exist or is not executable.'
    )
    const name = new DockerNotInstalled({
      binary: "dockerd",
      searched: ["/usr/bin", "/bin"],
      hint: "Install docker.io."
    })
    expect(name.message).toBe(
      'Docker is not installed: "dockerd" was not found on PATH (searched /usr/bin:/bin). Install docker.io.'
    )
    expect(path.message).not.toContain("--")
  })
})
