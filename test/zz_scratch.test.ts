import { it } from "@effect/vitest"
import { Effect } from "effect"
import * as CPM from "../src/ContainerProcessManager.js"
import { execSync } from "node:child_process"

it.scopedLive(
  "scratch",
  () =>
    Effect.gen(function* () {
      const pm = yield* CPM.make({ socket: "/tmp/exp/d/docker.sock", containerId: "t2" })
      const h = yield* pm.exec(["sleep", "100"])
      const t0 = Date.now()
      execSync("DOCKER_HOST=unix:///tmp/exp/d/docker.sock docker kill t2")
      console.log(yield* h.awaitExit, Date.now() - t0)
      console.log(yield* Effect.either(pm.exec(["true"])))
      execSync("DOCKER_HOST=unix:///tmp/exp/d/docker.sock docker rm -f t2")
      console.log(yield* Effect.either(pm.exec(["true"])))
    }),
  30000
)
