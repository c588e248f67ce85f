/**
 * The pure parts of compose, login and output lines: what under gVisor is
 * refused and what the override says, the login read from an environment,
 * output split into lines per source. The real runs are in
 * sandbox.compose.real.test.ts (runc) and sandbox.compose.gvisor.real.test.ts
 * (runsc).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { splitLines } from "../src/internal/dockerCommand.js"
import * as SandboxCompose from "../src/SandboxCompose.js"
import * as SandboxDocker from "../src/SandboxDocker.js"

const services = (entries: Record<string, Record<string, unknown>>) => ({
  version: "3.9",
  services: entries
})

describe("compose under gVisor: what is refused", () => {
  it("a file whose services ask for no network passes", () => {
    expect(
      SandboxCompose.networkSettingRefused("p", services({ web: {}, db: { network_mode: "host" } }))
    ).toBeUndefined()
  })

  it.each([
    [{ version: "3.9", services: {}, networks: { front: {} } }, undefined, "networks (front)"],
    [services({ web: { networks: { front: null } } }), "web", "networks"],
    [services({ web: {}, client: { links: ["web"] } }), "client", "links"],
    [services({ web: { network_mode: "bridge" } }), "web", "network_mode: bridge"],
    [services({ db: { network_mode: "service:web" } }), "db", "network_mode: service:web"]
  ])("%j is refused naming service %s and setting %s", (config, service, setting) => {
    const error = SandboxCompose.networkSettingRefused("proj", config)
    expect(error).toMatchObject({ _tag: "ComposeNetworkUnsupported", project: "proj", setting })
    expect(error?.service).toBe(service)
    expect(error?.message).toContain(`asks for ${setting}`)
    expect(error?.message).toContain("network_mode: host")
  })

  it("a version 1 file passes (its services' bridge is docker-compose's default, which the override replaces), unless it has links, another network_mode or a build", () => {
    const v1 = (entries: Record<string, Record<string, unknown>>) => ({
      version: "1",
      services: entries
    })
    expect(
      SandboxCompose.networkSettingRefused(
        "p",
        v1({ web: { network_mode: "bridge" }, db: { network_mode: "host" } })
      )
    ).toBeUndefined()
    expect(
      SandboxCompose.networkSettingRefused("p", v1({ web: { network_mode: "none" } }))
    ).toMatchObject({ service: "web", setting: "network_mode: none" })
    expect(
      SandboxCompose.networkSettingRefused("p", v1({ web: { links: ["db"] }, db: {} }))
    ).toMatchObject({ service: "web", setting: "links" })
    const build = SandboxCompose.networkSettingRefused(
      "p",
      v1({ app: { network_mode: "bridge", build: {} } })
    )
    expect(build).toMatchObject({ _tag: "ComposeNetworkUnsupported", service: "app" })
    expect(build?.setting).toContain("version 1")
    expect(build?.message).toContain('add `version: "2"`')
    expect(build?.message).toContain("`services:` key")
    expect(build?.message).not.toContain("Remove build")
  })

  it("a version 1 file's override is in version 1 (net: host for every service) under runsc, and none on runc", () => {
    const config = { version: "1", services: { web: {}, app: { build: {} } } }
    expect(JSON.parse(SandboxCompose.overrideFor(config, "runsc") ?? "")).toEqual({
      web: { net: "host" },
      app: { net: "host" }
    })
    expect(SandboxCompose.overrideFor(config, "runc")).toBeUndefined()
  })

  it("the runsc override keeps the file's version and gives every service network_mode host", () => {
    const override = JSON.parse(
      SandboxCompose.overrideFor(services({ web: {}, client: {} }), "runsc") ?? ""
    )
    expect(override).toEqual({
      version: "3.9",
      services: { web: { network_mode: "host" }, client: { network_mode: "host" } }
    })
  })

  it("build steps get the host network on either runtime, unless the file names one; on runc nothing else changes", () => {
    const config = services({
      app: { build: {} },
      own: { build: { network: "none" } },
      web: {}
    })
    expect(JSON.parse(SandboxCompose.overrideFor(config, "runc") ?? "")).toEqual({
      version: "3.9",
      services: { app: { build: { network: "host" } } }
    })
    expect(JSON.parse(SandboxCompose.overrideFor(config, "runsc") ?? "").services).toEqual({
      app: { network_mode: "host", build: { network: "host" } },
      own: { network_mode: "host" },
      web: { network_mode: "host" }
    })
    expect(SandboxCompose.overrideFor(services({ web: {} }), "runc")).toBeUndefined()
    expect(SandboxCompose.overrideFor({ services: { a: {} } }, "runsc")).toBe(
      '{"services":{"a":{"network_mode":"host"}}}\n'
    )
  })
})

describe("login from the environment", () => {
  it("both DOCKER_USERNAME and DOCKER_PASSWORD: a login, the password Redacted, to DOCKER_REGISTRY", () => {
    const login = Option.getOrThrow(
      SandboxDocker.loginFromEnv({
        DOCKER_USERNAME: "me",
        DOCKER_PASSWORD: "pw-123",
        DOCKER_REGISTRY: "r.example:5000"
      })
    )
    expect(login.username).toBe("me")
    expect(login.registry).toBe("r.example:5000")
    expect(Redacted.value(login.password)).toBe("pw-123")
    expect(JSON.stringify(login)).not.toContain("pw-123")
    expect(String(login.password)).not.toContain("pw-123")
  })

  it("without a registry it is Docker Hub's; one of the two missing or empty: no login", () => {
    const hub = SandboxDocker.loginFromEnv({ DOCKER_USERNAME: "me", DOCKER_PASSWORD: "pw" })
    expect(Option.getOrThrow(hub).registry).toBeUndefined()
    expect(Option.isNone(SandboxDocker.loginFromEnv({ DOCKER_USERNAME: "me" }))).toBe(true)
    expect(
      Option.isNone(SandboxDocker.loginFromEnv({ DOCKER_USERNAME: "me", DOCKER_PASSWORD: "" }))
    ).toBe(true)
    expect(Option.isNone(SandboxDocker.loginFromEnv({ DOCKER_PASSWORD: "pw" }))).toBe(true)
  })
})

describe("output lines", () => {
  it.effect("are split per source: a stdout line is never finished by stderr text", () =>
    Effect.gen(function* () {
      const lines = yield* Stream.runCollect(
        splitLines(
          Stream.make(
            { source: "stdout" as const, text: "Step 1/2 : FR" },
            { source: "stderr" as const, text: "Creating web ... \r\n" },
            { source: "stdout" as const, text: "OM x\nStep 2/2" },
            { source: "stderr" as const, text: "warn" }
          )
        )
      )
      expect(Chunk.toReadonlyArray(lines)).toEqual([
        { source: "stderr", line: "Creating web ... " },
        { source: "stdout", line: "Step 1/2 : FROM x" },
        { source: "stdout", line: "Step 2/2" },
        { source: "stderr", line: "warn" }
      ])
    })
  )
})
