/**
 * `sandbox-docker sandbox docker` for compose, volumes, build and the login
 * from the sandbox's environment, run as a user runs it: the built binary
 * against a host engine of its own (scripts/seedScenario.ts's
 * `hostEnvironment`, set up once for the file), exit codes and `--json`
 * events. Each command is its own process.
 */
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Dockerd from "../src/Dockerd.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import { authRegistry } from "./support/authRegistry.js"
import { type Result, run } from "./support/cli.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()

/** Runs the CLI to its end, `stdin` (a compose file for `--file -`) on its standard input. */
const cli = (args: ReadonlyArray<string>, stdin?: string): Promise<Result> =>
  run(args, stdin === undefined ? {} : { stdin })

const lineEvents = (result: Result) =>
  result.events.filter((event) => event.event === "line").map((event) => String(event.line))

describe.skipIf(!real)("sandbox-docker sandbox docker: compose, volume, build, login", () => {
  const runtime = ManagedRuntime.make(Dockerd.layerNode)
  let host: HostEnvironment
  let registry: string
  let scope: Scope.CloseableScope | undefined
  const password = "cli-Pw-5520-never-shown"

  beforeAll(async () => {
    scope = await runtime.runPromise(Scope.make())
    host = await runtime.runPromise(hostEnvironment().pipe(Scope.extend(scope)))
    registry = await runtime.runPromise(
      authRegistry(host, "tester", password).pipe(Scope.extend(scope))
    )
  }, 600_000)

  afterAll(async () => {
    if (scope !== undefined) await runtime.runPromise(Scope.close(scope, Exit.void))
    await runtime.dispose()
  }, 300_000)

  const name = `sdc-${process.pid}`
  const engine = () => `--engine=${host.socket}`
  const docker = (args: ReadonlyArray<string>, stdin?: string) =>
    cli(["sandbox", "docker", engine(), name, ...args], stdin)
  const inside = (script: string) =>
    cli(["sandbox", "exec", engine(), name, "--", "sh", "-c", script])

  const compose = () => `
services:
  web:
    image: ${host.image}
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"]
    volumes: ["data:/data"]
  client:
    image: ${host.image}
    command: ["sh", "-c", "until out=$$(wget -qO- http://web:8080/ 2>/dev/null); do sleep 0.2; done; echo \\"client got: $$out\\"; exec sleep 3600"]
volumes:
  data: {}
`

  it("create --docker with DOCKER_USERNAME/DOCKER_PASSWORD in its env: the first docker command logs in first", async () => {
    const created = await cli([
      "sandbox",
      "create",
      engine(),
      "--network=host",
      "--image",
      SANDBOX_IMAGE,
      "--docker",
      "--name",
      name,
      "--env=DOCKER_USERNAME=tester",
      `--env=DOCKER_PASSWORD=${password}`,
      `--env=DOCKER_REGISTRY=${registry}`,
      "--json"
    ])
    expect(created.code, created.stdout + created.stderr).toBe(0)
    const before = await inside("cat /root/.docker/config.json 2>/dev/null || echo none")
    expect(before.stdout.trim()).toBe("none")
    const list = await docker(["volume", "ls", "--json"])
    expect(list.code, list.stdout + list.stderr).toBe(0)
    const after = await inside("cat /root/.docker/config.json")
    expect(after.stdout).toContain(`"${registry}"`)
    expect(list.stdout + list.stderr).not.toContain(password)
  }, 300_000)

  it("a later docker command does not log in again while the docker CLI inside holds the registry's credentials; after a logout the next one logs in again", async () => {
    // A docker CLI inside that notes each invocation's arguments (the password goes on stdin).
    const wrapped = await inside(
      [
        "cat > /usr/local/bin/docker <<'EOF'",
        "#!/bin/sh",
        'printf "%s\\n" "$*" >> /tmp/docker-calls',
        'exec /usr/bin/docker "$@"',
        "EOF",
        "chmod +x /usr/local/bin/docker"
      ].join("\n")
    )
    expect(wrapped.code, wrapped.stderr).toBe(0)
    const calls = async () =>
      (await inside("cat /tmp/docker-calls; rm -f /tmp/docker-calls")).stdout
    for (const args of [["ps"], ["volume", "ls", "--json"]]) {
      const result = await docker(args)
      expect(result.code, result.stdout + result.stderr).toBe(0)
      const seen = await calls()
      // The command ran through the wrapper, and no login with it.
      expect(seen).toContain(args[0])
      expect(seen).not.toMatch(/ login /)
    }
    const logout = await inside(`/usr/bin/docker logout ${registry}`)
    expect(logout.code, logout.stderr).toBe(0)
    const again = await docker(["ps"])
    expect(again.code, again.stdout + again.stderr).toBe(0)
    const seen = await calls()
    expect(seen).toContain(` login --username tester --password-stdin ${registry}`)
    expect(seen).not.toContain(password)
    expect((await inside("cat /root/.docker/config.json")).stdout).toContain(`"${registry}"`)
    expect(again.stdout + again.stderr).not.toContain(password)
    expect((await inside("rm /usr/local/bin/docker")).code).toBe(0)
  }, 300_000)

  it("compose up --file - --json: its lines as line events; the services reach each other; down --volumes leaves no container, network or volume", async () => {
    const up = await docker(
      ["compose", "up", "--project", "demo", "--file", "-", "--json"],
      compose()
    )
    expect(up.code, up.stdout + up.stderr).toBe(0)
    expect(lineEvents(up).some((line) => line.includes("Creating demo_web_1"))).toBe(true)
    expect(up.events.find((event) => event.event === "line")).toMatchObject({ source: "stderr" })

    let logs: Result | undefined
    for (let attempt = 0; attempt < 60; attempt++) {
      logs = await docker(["compose", "logs", "--project=demo", "--file=-", "client"], compose())
      if (logs.stdout.includes("client got: hello-from-web")) break
    }
    expect(logs?.code).toBe(0)
    expect(logs?.stdout).toMatch(/client_1\s+\| client got: hello-from-web/)

    const ps = await docker(["compose", "ps", "--project", "demo", "--file", "-"], compose())
    expect(ps.code).toBe(0)
    expect(ps.stdout).toMatch(/demo_web_1\s.*\sUp/)

    const down = await docker(
      ["compose", "down", "--project", "demo", "--file", "-", "--volumes", "--json"],
      compose()
    )
    expect(down.code, down.stdout + down.stderr).toBe(0)
    expect(lineEvents(down)).toContain("Removing network demo_default")
    const left = await inside(
      "docker ps --all --quiet; docker network ls --format '{{.Name}}'; docker volume ls --quiet"
    )
    expect(
      left.stdout
        .split("\n")
        .filter((line) => line !== "")
        .sort()
    ).toEqual(["host", "none"])
  }, 300_000)

  it("volume create, ls, inspect, rm with --json events; inspect of a removed volume exits 7 with VolumeNotFound", async () => {
    const created = await docker(["volume", "create", "cli-data", "--label", "owner=cli", "--json"])
    expect(created.code, created.stdout + created.stderr).toBe(0)
    expect(created.events).toEqual([{ event: "volume-created", name: "cli-data" }])
    const listed = await docker(["volume", "ls", "--json"])
    expect(listed.events).toEqual([{ event: "volume", name: "cli-data", driver: "local" }])
    const inspected = await docker(["volume", "inspect", "cli-data", "--json"])
    expect(inspected.events[0]).toMatchObject({
      event: "volume",
      Name: "cli-data",
      Driver: "local",
      Labels: { owner: "cli" }
    })
    const removed = await docker(["volume", "rm", "cli-data", "--json"])
    expect(removed.code).toBe(0)
    expect(removed.events).toEqual([{ event: "volume-removed", name: "cli-data" }])
    const missing = await docker(["volume", "inspect", "cli-data", "--json"])
    expect(missing.code).toBe(7)
    expect(missing.events.at(-1)).toMatchObject({
      event: "error",
      error: "VolumeNotFound",
      volume: "cli-data"
    })
  }, 300_000)

  it("build --tag --json: the build's lines as line events, up to Successfully tagged", async () => {
    const written = await cli([
      "sandbox",
      "exec",
      engine(),
      name,
      "--",
      "sh",
      "-c",
      `mkdir -p /work/app && printf 'FROM ${host.image}\\nRUN echo cli-step-marker\\n' > /work/app/Dockerfile`
    ])
    expect(written.code, written.stderr).toBe(0)
    const build = await docker(["build", "--tag", "cli-app:1", "/work/app", "--json"])
    expect(build.code, build.stdout + build.stderr).toBe(0)
    const lines = lineEvents(build)
    expect(lines).toContain("cli-step-marker")
    expect(lines).toContain("Successfully tagged cli-app:1")
  }, 300_000)

  it("refused arguments exit 2 before anything runs", async () => {
    const cases: ReadonlyArray<ReadonlyArray<string>> = [
      ["compose", "up", "--project", "Bad Name", "--file", "/x.yml", "--json"],
      ["compose", "up", "--project", "ok", "--file", "relative.yml", "--json"],
      ["compose", "up", "--project", "ok", "--file", "/x.yml", "--json", "--", "--scale"],
      ["volume", "create", "x", "--json"],
      ["build", "--tag", "UPPER", "/work/app", "--json"]
    ]
    for (const args of cases) {
      const result = await docker(args)
      expect(result.code, `${args.join(" ")}: ${result.stdout}${result.stderr}`).toBe(2)
      expect(result.events.at(-1)).toMatchObject({ event: "error", error: "InvalidDockerArgument" })
    }
    const usage = await docker(["compose", "down", "--project", "ok", "--file", "/x.yml", "web"])
    expect(usage.code).toBe(2)
  }, 300_000)

  it("a wrong DOCKER_PASSWORD: docker commands exit 7 with DockerLoginFailed, the password nowhere in the output", async () => {
    const wrong = "wrong-cli-Pw-9931"
    const other = `${name}-wrong`
    const created = await cli([
      "sandbox",
      "create",
      engine(),
      "--network=host",
      "--image",
      SANDBOX_IMAGE,
      "--docker",
      "--name",
      other,
      "--env=DOCKER_USERNAME=tester",
      `--env=DOCKER_PASSWORD=${wrong}`,
      `--env=DOCKER_REGISTRY=${registry}`
    ])
    expect(created.code, created.stdout + created.stderr).toBe(0)
    const ps = await cli(["sandbox", "docker", engine(), other, "ps", "--json"])
    expect(ps.code).toBe(7)
    expect(ps.events.at(-1)).toMatchObject({
      event: "error",
      error: "DockerLoginFailed",
      username: "tester",
      registry
    })
    const human = await cli(["sandbox", "docker", engine(), other, "volume", "ls"])
    expect(human.code).toBe(7)
    expect(human.stderr).toContain("Check the credentials")
    for (const result of [ps, human]) expect(result.stdout + result.stderr).not.toContain(wrong)
    const removed = await cli(["sandbox", "rm", engine(), other])
    expect(removed.code).toBe(0)
  }, 300_000)

  it("rm removes the sandbox", async () => {
    const removed = await cli(["sandbox", "rm", engine(), name])
    expect(removed.code).toBe(0)
    const again = await cli(["sandbox", "rm", engine(), name])
    expect(again.code).toBe(2)
  }, 300_000)
})
