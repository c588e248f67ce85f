import { it } from "@effect/vitest"
import { Effect } from "effect"
import * as CPM from "../src/ContainerProcessManager.js"

it.scopedLive("scratch", () =>
  Effect.gen(function* () {
    const pm = yield* CPM.make({ socket: "/tmp/exp/d/docker.sock", containerId: "t1" })
    for (let i = 0; i < 3; i++) {
    const t0 = Date.now()
    yield* Effect.scoped(Effect.gen(function* () {
      const h = yield* pm.exec(["sh", "-c", "sleep 1000 & echo child $!; sleep 0.3"])
      console.log("started", Date.now() - t0)
      console.log(yield* h.awaitExit, Date.now() - t0, yield* h.logTail)
    }))
    console.log("closed", Date.now() - t0)
    const t1 = Date.now()
    yield* Effect.scoped(Effect.gen(function* () {
      const h = yield* pm.exec(["true"])
      yield* h.awaitExit
      console.log("true exited", Date.now() - t1)
    }))
    console.log("true closed", Date.now() - t1)
    }
  }), 30000)
