/**
 * `sandbox-docker sandbox gc`, `ls` and `renew`, and the supervised Docker
 * that `sandbox create --docker` leaves inside, run as a user runs them: the
 * built binary against a host engine of its own (scripts/seedScenario.ts's
 * `hostEnvironment`, set up once for the file). Lease files go to the host
 * environment's directory (`XDG_RUNTIME_DIR`).
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Dockerd from "../src/Dockerd.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import {
  BUSYBOX_IMAGE,
  type HostEnvironment,
  hostEnvironment,
  SANDBOX_IMAGE
} from "../scripts/seedScenario.js"
import { type Result, run as runCli } from "./support/cli.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()
const run = promisify(execFile)

/** Runs the CLI; `via` is a command line that runs it as its child (`sh -c '…; true'`). */
const cli = (
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv = process.env,
  via?: ReadonlyArray<string>
): Promise<Result> => runCli(args, { env, ...(via === undefined ? {} : { via }) })

describe("sandbox gc, ls, renew (no engine needed)", () => {
  it("each has --help with the exit codes", async () => {
    for (const name of ["gc", "ls", "renew"]) {
      const help = await cli(["sandbox", name, "--help"])
      expect(help.code).toBe(0)
      for (const code of ["2 ", "8 "]) expect(help.stdout).toContain(`  ${code}`)
    }
    expect((await cli(["sandbox", "gc", "--help"])).stdout).toContain("--dry-run")
  })

  it("gc on an engine nobody serves exits 8 with an EngineUnreachable event", async () => {
    const result = await cli(["sandbox", "gc", "--engine=/nonexistent/engine.sock", "--json"])
    expect(result.code).toBe(8)
    expect(result.events.at(-1)).toMatchObject({
      event: "error",
      error: "EngineUnreachable",
      socket: "/nonexistent/engine.sock"
    })
  })

  it.each([
    [["sandbox", "create", "--image", "x", "--lease=0s"], "--lease"],
    [["sandbox", "create", "--image", "x", "--lease=soon"], "--lease"],
    [["sandbox", "create", "--image", "x", "--owner=process:vm:1:2:3"], "--owner"],
    [["sandbox", "create", "--image", "x", "--restart=always"], "--restart"],
    [["sandbox", "create", "--image", "x", "--max-restarts=-1"], "--max-restarts"],
    [["sandbox", "gc", "--stop-grace=forever"], "--stop-grace"],
    [["sandbox", "renew"], "NAME"]
  ])("bad input %j exits 2 naming the problem", async (args, needle) => {
    const result = await cli(args)
    expect(result.code).toBe(2)
    expect(`${result.stdout}\n${result.stderr}`).toContain(needle)
  })
})

describe.skipIf(!real)("sandbox owners, gc and supervised Docker against a host engine", () => {
  const runtime = ManagedRuntime.make(Dockerd.layerNode)
  let host: HostEnvironment
  let scope: Scope.CloseableScope | undefined
  let env: NodeJS.ProcessEnv

  beforeAll(async () => {
    scope = await runtime.runPromise(Scope.make())
    host = await runtime.runPromise(hostEnvironment().pipe(Scope.extend(scope)))
    env = { ...process.env, XDG_RUNTIME_DIR: host.dir }
  }, 600_000)

  afterAll(async () => {
    if (scope !== undefined) await runtime.runPromise(Scope.close(scope, Exit.void))
    await runtime.dispose()
  }, 120_000)

  const prefix = `sdo-${process.pid}`
  const engine = () => `--engine=${host.socket}`
  const docker = (args: ReadonlyArray<string>) => run("docker", [...args], { env: host.env })
  const exists = async (name: string) =>
    (await docker(["ps", "--all", "--quiet", "--filter", `name=^${name}$`])).stdout.trim() !== ""
  const listed = async (name: string) => {
    const ls = await cli(["sandbox", "ls", engine(), "--json"], env)
    expect(ls.code, ls.stdout + ls.stderr).toBe(0)
    return ls.events.find((event) => event.event === "sandbox" && event.name === name)
  }

  it("Docker inside restarts after a SIGKILL, the crash is listed by sandbox ls, and Docker serves again; rm stops it for good", async () => {
    const name = `${prefix}-docker`
    const created = await cli(
      [
        "sandbox",
        "create",
        engine(),
        "--network=host",
        "--image",
        SANDBOX_IMAGE,
        "--docker",
        "--name",
        name,
        "--json"
      ],
      env
    )
    expect(created.code, created.stdout + created.stderr).toBe(0)
    const before = await listed(name)
    expect(before).toMatchObject({ docker: { state: "running", restarts: 0 }, gc: "keep" })
    const firstPid = (before?.docker as { pid: number }).pid

    await docker(["exec", name, "sh", "-c", "kill -KILL $(cat /var/run/docker.pid)"])
    // The launcher restarts it 500 ms after the crash; each look is one `sandbox ls`.
    let after: Record<string, unknown> | undefined
    for (let look = 0; look < 60; look++) {
      after = await listed(name)
      const inside = after?.docker as { state: string; pid: number } | undefined
      if (inside?.state === "running" && inside.pid !== firstPid) break
    }
    expect(after).toMatchObject({
      docker: {
        state: "running",
        restarts: 1,
        crashes: [{ status: "signal SIGKILL", restart: 1 }]
      }
    })
    expect((after?.docker as { pid: number }).pid).not.toBe(firstPid)
    const ps = await cli(["sandbox", "docker", engine(), name, "ps"], env)
    expect(ps.code, ps.stdout + ps.stderr).toBe(0)

    const { stdout: idLine } = await docker(["inspect", "--format", "{{.Id}}", name])
    const removed = await cli(["sandbox", "rm", engine(), name, "--json"], env)
    expect(removed.code, removed.stdout + removed.stderr).toBe(0)
    expect(await exists(name)).toBe(false)
    expect(await Effect.runPromise(pidsMentioning(idLine.trim()))).toEqual([])
  }, 300_000)

  it("create --restart=never: Docker killed inside stays down, exited, no restart", async () => {
    const name = `${prefix}-never`
    const created = await cli(
      [
        "sandbox",
        "create",
        engine(),
        "--network=host",
        "--image",
        SANDBOX_IMAGE,
        "--docker",
        "--restart=never",
        "--name",
        name,
        "--json"
      ],
      env
    )
    expect(created.code, created.stdout + created.stderr).toBe(0)
    await docker(["exec", name, "sh", "-c", "kill -KILL $(cat /var/run/docker.pid)"])
    let after: Record<string, unknown> | undefined
    for (let look = 0; look < 60; look++) {
      after = await listed(name)
      if ((after?.docker as { state: string } | undefined)?.state === "exited") break
    }
    expect(after).toMatchObject({
      docker: { state: "exited", exit: "signal SIGKILL", restarts: 0 }
    })
    expect((await cli(["sandbox", "rm", engine(), name], env)).code).toBe(0)
  }, 300_000)

  it("gc: a lease that ran out and an owner gone are removed (--dry-run first only says so); an owner alive and an unlabelled container stay", async () => {
    const leased = `${prefix}-leased`
    const orphan = `${prefix}-orphan`
    const mine = `${prefix}-mine`
    const plain = `${prefix}-plain`
    const create = (name: string, extra: ReadonlyArray<string>, via?: ReadonlyArray<string>) =>
      cli(
        [
          "sandbox",
          "create",
          engine(),
          "--network=host",
          "--image",
          BUSYBOX_IMAGE,
          "--name",
          name,
          "--json",
          ...extra
        ],
        env,
        via
      )
    const withLease = await create(leased, ["--owner=ci-job-1", "--lease=3s"])
    expect(withLease.code, withLease.stdout + withLease.stderr).toBe(0)
    expect(withLease.events.find((e) => e.event === "created")).toMatchObject({
      owner: "ci-job-1",
      lease: expect.stringContaining(`${host.dir}/sandbox-docker/leases/`)
    })
    // Its owner is a shell that exits once the command is done.
    const gone = await create(orphan, [], ["sh", "-c", '"$@"; true', "sh"])
    expect(gone.code, gone.stdout + gone.stderr).toBe(0)
    // Owned by this test's process, which lives on.
    expect((await create(mine, [])).code).toBe(0)
    await docker([
      "run",
      "--detach",
      "--network=host",
      "--name",
      plain,
      BUSYBOX_IMAGE,
      "sleep",
      "600"
    ])

    const renewed = await cli(["sandbox", "renew", engine(), leased, "--lease=2s", "--json"], env)
    expect(renewed.code, renewed.stdout + renewed.stderr).toBe(0)
    expect(renewed.events.at(-1)).toMatchObject({ event: "renewed", sandbox: leased })
    const noLease = await cli(["sandbox", "renew", engine(), mine, "--json"], env)
    expect(noLease.code).toBe(2)
    expect(noLease.events.at(-1)).toMatchObject({ event: "error", error: "InvalidArguments" })

    // Until the lease runs out: a command per look, no clock read.
    let dry: Result | undefined
    for (let look = 0; look < 60; look++) {
      dry = await cli(["sandbox", "gc", engine(), "--dry-run", "--json"], env)
      if (dry.events.some((e) => e.event === "would-reap" && e.name === leased)) break
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    expect(dry?.code).toBe(0)
    const verdict = (name: string) => dry?.events.find((e) => e.name === name)
    expect(verdict(leased)).toMatchObject({
      event: "would-reap",
      reason: expect.stringMatching(/^lease ran out/)
    })
    expect(verdict(orphan)).toMatchObject({
      event: "would-reap",
      reason: expect.stringMatching(/^owner gone: process \d+ has exited/)
    })
    expect(verdict(mine)).toMatchObject({ event: "kept", reason: "owner alive" })
    expect(verdict(plain)).toBeUndefined()
    for (const name of [leased, orphan, mine, plain]) expect(await exists(name)).toBe(true)

    const gc = await cli(["sandbox", "gc", engine(), "--json"], env)
    expect(gc.code, gc.stdout + gc.stderr).toBe(0)
    expect(gc.events.filter((e) => e.event === "reaped").map((e) => e.name)).toEqual(
      expect.arrayContaining([leased, orphan])
    )
    expect(gc.events.at(-1)).toMatchObject({ event: "gc", dryRun: false, failed: 0 })
    expect(await exists(leased)).toBe(false)
    expect(await exists(orphan)).toBe(false)
    expect(await exists(mine)).toBe(true)
    expect(await exists(plain)).toBe(true)
    expect((await cli(["sandbox", "rm", engine(), mine], env)).code).toBe(0)
    await docker(["rm", "--force", plain])
  }, 300_000)
})
