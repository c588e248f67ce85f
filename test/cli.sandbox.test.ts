/**
 * `sandbox-docker sandbox` run as a user runs it: the built binary against a
 * host engine of its own (scripts/seedScenario.ts's `hostEnvironment`, set up
 * once for the file), exit codes and JSON events. Each command is its own
 * process: the sandbox and the Docker inside it outlive the one that created
 * them.
 */
import { execFile, spawn } from "node:child_process"
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
import { BIN } from "./support/cli.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()
const run = promisify(execFile)

interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly events: ReadonlyArray<Record<string, unknown>>
}

const cli = (args: ReadonlyArray<string>): Promise<Result> =>
  new Promise((resolve) => {
    const child = spawn("node", [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("close", (code) => {
      const events = stdout.split("\n").flatMap((line) => {
        try {
          const parsed: unknown = JSON.parse(line)
          return typeof parsed === "object" && parsed !== null
            ? [parsed as Record<string, unknown>]
            : []
        } catch {
          return []
        }
      })
      resolve({ code, stdout, stderr, events })
    })
  })

const noStackTrace = (result: Result) =>
  expect(
    `${result.stdout}\n${result.stderr}`.split("\n").filter((line) => /^\s+at /.test(line))
  ).toEqual([])

describe("sandbox-docker sandbox (no engine needed)", () => {
  it("--help lists the sandbox commands; each has help with the exit codes", async () => {
    const group = await cli(["sandbox", "--help"])
    expect(group.code).toBe(0)
    for (const name of ["create", "exec", "docker", "rm"]) expect(group.stdout).toContain(name)
    for (const name of ["create", "exec", "docker", "rm"]) {
      const help = await cli(["sandbox", name, "--help"])
      expect(help.code).toBe(0)
      for (const code of ["2 ", "7 ", "8 "]) expect(help.stdout).toContain(`  ${code}`)
    }
  })

  it.each([
    [["sandbox", "create"], "image"],
    [["sandbox", "create", "--image", "x", "--env", "NOEQUALS"], "--env"],
    [["sandbox", "create", "--image", "x", "--cpu=lots"], "--cpu"],
    [["sandbox", "create", "--image", "x", "--network=wifi"], "--network"],
    [["sandbox", "create", "--image", "x", "--name=bad name"], "--name"],
    [["sandbox", "create", "--image", "x", "--engine", "relative.sock"], "--engine"],
    [["sandbox", "docker", "box", "ps", "extra"], "docker ps takes 0"],
    [["sandbox", "docker", "box", "frobnicate"], "pull, run"],
    [["sandbox", "exec", "box"], "CMD"]
  ])("bad input %j exits 2 naming the problem", async (args, needle) => {
    const result = await cli(args)
    expect(result.code).toBe(2)
    expect(`${result.stdout}\n${result.stderr}`).toContain(needle)
    noStackTrace(result)
  })

  it("an engine nobody serves exits 8 with a JSON error event", async () => {
    const result = await cli([
      "sandbox",
      "rm",
      "--engine=/nonexistent/engine.sock",
      "box",
      "--json"
    ])
    expect(result.code).toBe(8)
    expect(result.events.at(-1)).toMatchObject({ event: "error", error: "EngineUnreachable" })
  })
})

describe.skipIf(!real)("sandbox-docker sandbox against a host engine", () => {
  const runtime = ManagedRuntime.make(Dockerd.layerNode)
  let host: HostEnvironment
  let scope: Scope.CloseableScope | undefined

  beforeAll(async () => {
    scope = await runtime.runPromise(Scope.make())
    host = await runtime.runPromise(hostEnvironment().pipe(Scope.extend(scope)))
  }, 600_000)

  afterAll(async () => {
    if (scope !== undefined) await runtime.runPromise(Scope.close(scope, Exit.void))
    await runtime.dispose()
  }, 120_000)

  const name = `sdx-${process.pid}`
  const engine = () => `--engine=${host.socket}`

  it("create --docker --json: created, spawned, ready and the sandbox's id; exit 0", async () => {
    const result = await cli([
      "sandbox",
      "create",
      engine(),
      // The test engine's namespace (no docker0 there; it has no bridge network).
      "--network=host",
      "--image",
      SANDBOX_IMAGE,
      "--docker",
      "--name",
      name,
      "--env=GREETING=hello there",
      "--json"
    ])
    expect(result.code, result.stdout + result.stderr).toBe(0)
    const byEvent = (event: string) => result.events.find((e) => e.event === event)
    expect(byEvent("created")).toMatchObject({
      name,
      image: SANDBOX_IMAGE,
      runtime: "runc",
      network: "host"
    })
    expect(byEvent("spawned")?.pid).toEqual(expect.any(Number))
    const ready = byEvent("ready")
    expect(ready).toMatchObject({ socket: "/var/run/docker.sock" })
    expect(ready?.serverVersion).toMatch(/^\d+\.\d+/)
    expect(result.events.at(-1)).toMatchObject({ event: "sandbox", name, docker: true })
    // This process is gone; the sandbox and Docker inside it are not.
    const { stdout } = await run("docker", ["ps", "--quiet", "--filter", `name=^${name}$`], {
      env: host.env
    })
    expect(stdout.trim()).not.toBe("")
  }, 300_000)

  it("exec: output streamed, the command's exit code", async () => {
    const echo = await cli([
      "sandbox",
      "exec",
      engine(),
      name,
      "--",
      "sh",
      "-c",
      'echo "$GREETING"'
    ])
    expect(echo.code, echo.stderr).toBe(0)
    expect(echo.stdout).toBe("hello there\n")
    const failing = await cli([
      "sandbox",
      "exec",
      engine(),
      name,
      "--",
      "sh",
      "-c",
      "echo oops >&2; exit 3"
    ])
    expect(failing.code).toBe(3)
    expect(failing.stderr).toContain("oops")
    const missing = await cli([
      "sandbox",
      "exec",
      engine(),
      name,
      "--json",
      "--",
      "no-such-command"
    ])
    expect(missing.code).toBe(127)
    expect(missing.events.at(-1)).toMatchObject({
      event: "error",
      error: "CommandNotFound",
      command: "no-such-command",
      searched: expect.arrayContaining(["/usr/bin"])
    })
  }, 120_000)

  it("docker pull and run of the registry's image, then images lists it", async () => {
    const pull = await cli(["sandbox", "docker", engine(), name, "pull", host.image])
    expect(pull.code, pull.stdout + pull.stderr).toBe(0)
    const said = await cli([
      "sandbox",
      "docker",
      engine(),
      name,
      "run",
      host.image,
      "--",
      "/bin/busybox",
      "echo",
      "-n",
      "hello from a container in a sandbox"
    ])
    expect(said.code, said.stdout + said.stderr).toBe(0)
    expect(said.stdout).toContain("hello from a container in a sandbox")
    const images = await cli(["sandbox", "docker", engine(), name, "images"])
    expect(images.code).toBe(0)
    expect(images.stdout).toContain("demo/busybox")
  }, 180_000)

  it("a refused argument exits 2; a failing docker command exits 7", async () => {
    const refused = await cli(["sandbox", "docker", engine(), name, "pull", "--all-tags", "--json"])
    expect(refused.code).toBe(2)
    const viaSeparator = await cli([
      "sandbox",
      "docker",
      engine(),
      name,
      "--json",
      "--",
      "pull",
      "--all-tags"
    ])
    expect(viaSeparator.code).toBe(2)
    expect(viaSeparator.events.at(-1)).toMatchObject({
      event: "error",
      error: "InvalidDockerArgument",
      argument: expect.any(String),
      value: "--all-tags",
      problem: expect.any(String)
    })
    const failed = await cli([
      "sandbox",
      "docker",
      engine(),
      name,
      "rmi",
      "127.0.0.1:5000/demo/nope:1",
      "--json"
    ])
    expect(failed.code).toBe(7)
    expect(failed.events.at(-1)).toMatchObject({
      event: "error",
      error: "DockerCommandFailed",
      argv: expect.arrayContaining(["docker", "rmi", "127.0.0.1:5000/demo/nope:1"]),
      exitCode: 1,
      stderrTail: expect.arrayContaining([expect.stringContaining("127.0.0.1:5000/demo/nope:1")])
    })
  }, 120_000)

  it("rm: nothing of the sandbox is left; removing it again exits 2", async () => {
    const { stdout: idLine } = await run("docker", ["inspect", "--format", "{{.Id}}", name], {
      env: host.env
    })
    const id = idLine.trim()
    const removed = await cli(["sandbox", "rm", engine(), name, "--json"])
    expect(removed.code, removed.stdout + removed.stderr).toBe(0)
    expect(removed.events.at(-1)).toMatchObject({ event: "removed", id, name })
    const { stdout } = await run("docker", ["ps", "--all", "--quiet", "--no-trunc"], {
      env: host.env
    })
    expect(stdout.split("\n").filter((line) => line.includes(id))).toEqual([])
    expect(await Effect.runPromise(pidsMentioning(id))).toEqual([])
    const again = await cli(["sandbox", "rm", engine(), name, "--json"])
    expect(again.code).toBe(2)
    expect(again.events.at(-1)).toMatchObject({
      event: "error",
      error: "SandboxNotFound",
      sandbox: name,
      reason: expect.any(String)
    })
  }, 120_000)

  it("create --docker of an image without Docker: DockerNotInstalled, exit 3, nothing left", async () => {
    const other = `${name}-nodocker`
    const result = await cli([
      "sandbox",
      "create",
      engine(),
      // The test engine's namespace (no docker0 there; it has no bridge network).
      "--network=host",
      "--image",
      BUSYBOX_IMAGE,
      "--docker",
      "--name",
      other,
      "--json"
    ])
    expect(result.code, result.stdout + result.stderr).toBe(3)
    expect(result.events.at(-1)).toMatchObject({ event: "error", error: "DockerNotInstalled" })
    const { stdout } = await run(
      "docker",
      ["ps", "--all", "--quiet", "--filter", `name=^${other}$`],
      { env: host.env }
    )
    expect(stdout.trim()).toBe("")
  }, 120_000)
})
