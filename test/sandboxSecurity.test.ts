/**
 * What a sandbox container asks of the engine for its isolation, what it
 * reports of it, and the typed failure when an engine does not apply it.
 * (What the settings really allow is test/escape.real.test.ts.)
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { forError } from "../src/cli/ExitCode.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Sandbox from "../src/Sandbox.js"
import * as SandboxSecurity from "../src/SandboxSecurity.js"

const spec = (fields: Partial<typeof Sandbox.SandboxSpec.Encoded> = {}) =>
  Sandbox.SandboxSpec.make({
    image: "sandbox-docker/debian-docker:bookworm",
    runtime: "runc",
    env: {},
    dockerEnabled: true,
    network: "bridge",
    ...fields
  } as Sandbox.SandboxSpec)

describe("SandboxSecurity.hostConfig", () => {
  it("every sandbox gets a private cgroup namespace, with or without Docker, on either runtime", () => {
    for (const runtime of ["runc", "runsc"] as const) {
      for (const dockerEnabled of [true, false]) {
        expect(SandboxSecurity.hostConfig(spec({ runtime, dockerEnabled })).CgroupnsMode).toBe(
          "private"
        )
      }
    }
  })

  it("a sandbox without Docker gets nothing beyond Docker's defaults", () => {
    expect(SandboxSecurity.hostConfig(spec({ dockerEnabled: false }))).toEqual({
      CgroupnsMode: "private"
    })
  })

  it("Docker inside on runc: SYS_ADMIN and NET_ADMIN only, the seccomp profile, masked paths kept", () => {
    const config = SandboxSecurity.hostConfig(spec())
    expect(config.CapAdd).toEqual(["SYS_ADMIN", "NET_ADMIN"])
    expect(config).not.toHaveProperty("CapDrop")
    expect(config).not.toHaveProperty("MaskedPaths")
    expect(config).not.toHaveProperty("ReadonlyPaths")
    expect(config.SecurityOpt).toEqual([
      `seccomp=${SandboxSecurity.SECCOMP_PROFILE}`,
      "apparmor=unconfined"
    ])
    expect(config.Sysctls).toEqual({ "net.ipv4.ip_forward": "1" })
  })

  it("on the engine's network namespace no sysctl is set (it would be the host's)", () => {
    expect(SandboxSecurity.hostConfig(spec({ network: "host" }))).not.toHaveProperty("Sysctls")
  })

  it("the seccomp profile refuses module loading and kexec, and answers ENOSYS for keyrings", () => {
    const profile = JSON.parse(SandboxSecurity.SECCOMP_PROFILE) as {
      defaultAction: string
      syscalls: ReadonlyArray<{ names: ReadonlyArray<string>; errnoRet: number }>
    }
    expect(profile.defaultAction).toBe("SCMP_ACT_ALLOW")
    const errnoOf = (name: string) =>
      profile.syscalls.find((rule) => rule.names.includes(name))?.errnoRet
    for (const name of ["init_module", "finit_module", "kexec_load", "bpf", "open_by_handle_at"]) {
      expect(errnoOf(name), name).toBe(1)
    }
    expect(errnoOf("keyctl")).toBe(38)
    // What dockerd and runc inside need stays allowed.
    for (const name of ["mount", "umount2", "unshare", "setns", "pivot_root", "mknod"]) {
      expect(errnoOf(name), name).toBeUndefined()
    }
  })
})

describe("SandboxSecurity.isolation", () => {
  it("runsc: the sandbox's own kernel, no route open", () => {
    expect(SandboxSecurity.isolation(spec({ runtime: "runsc" }))).toMatchObject({
      runtime: "runsc",
      kernel: "sandbox",
      openRoutes: []
    })
  })

  it("runc with Docker: the host's kernel, and the routes CAP_SYS_ADMIN keeps open", () => {
    const isolation = SandboxSecurity.isolation(spec())
    expect(isolation).toMatchObject({ runtime: "runc", kernel: "host" })
    expect(isolation.openRoutes).toEqual(SandboxSecurity.RUNC_DOCKER_OPEN_ROUTES)
    expect(isolation.summary).toContain("gVisor")
  })

  it("runc without Docker: the host's kernel, no route open", () => {
    expect(SandboxSecurity.isolation(spec({ dockerEnabled: false }))).toMatchObject({
      kernel: "host",
      openRoutes: []
    })
  })
})

describe("an engine that does not apply the isolation", () => {
  it.effect(
    "IsolationNotApplied (the cgroup namespace it reports), exit code 8, and the container is removed",
    () =>
      Effect.gen(function* () {
        const calls: Array<string> = []
        const engine = DockerEngine.fromAnswers("/test/docker.sock", {
          request: (method, path) => {
            calls.push(`${method} ${path.split("?")[0]}`)
            if (path.startsWith("/containers/create")) return Effect.succeed({ Id: "abc123" })
            // An engine before API 1.41: no CgroupnsMode in what it reports.
            if (method === "GET") return Effect.succeed({ Name: "/old", HostConfig: {} })
            return Effect.succeed({})
          }
        })
        const error = yield* Effect.flip(Sandbox.createContainer(engine, spec()))
        expect(error).toMatchObject({
          _tag: "IsolationNotApplied",
          setting: "CgroupnsMode",
          wanted: "private",
          found: "(not reported)"
        })
        expect(error.message).toContain("20.10")
        expect(forError(error._tag)).toBe(8)
        expect(calls).toEqual([
          "POST /containers/create",
          "POST /containers/abc123/start",
          "GET /containers/abc123/json",
          "DELETE /containers/abc123"
        ])
      })
  )

  it.effect("an engine that reports the private cgroup namespace: the sandbox is created", () =>
    Effect.gen(function* () {
      const engine = DockerEngine.fromAnswers("/test/docker.sock", {
        request: (method, path) =>
          path.startsWith("/containers/create")
            ? Effect.succeed({ Id: "abc123" })
            : method === "GET"
              ? Effect.succeed({ Name: "/fine", HostConfig: { CgroupnsMode: "private" } })
              : Effect.succeed({})
      })
      const created = yield* Sandbox.createContainer(engine, spec({ dockerEnabled: false }))
      expect(created).toEqual({ id: "abc123", name: "fine" })
    })
  )
})
