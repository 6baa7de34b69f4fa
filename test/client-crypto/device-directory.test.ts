/** The device directory's cache: a device id stays bound to the keys it was first verified with. */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { DeviceSchema, type Device } from "../../gen/parley/v1/device_pb.ts";
import { createDeviceKeys } from "../../src/client/crypto/index.ts";
import { DeviceDirectory } from "../../src/client/e2e/device-directory.ts";
import type { KeyServiceClient } from "../../src/client/e2e/services.ts";
import { MemoryStore } from "../../src/client/storage.ts";

function listedDevice(userId: string, deviceId: string): Device {
  const keys = createDeviceKeys();
  return create(DeviceSchema, { userId, deviceId, signingPublicKey: keys.signing.publicKey, boxPublicKey: keys.box.publicKey, boxKeySignature: keys.boxKeySignature });
}

/** A KeyService whose ListDevices answers whatever the test puts in `listing`. */
function fakeKeyService(listing: { devices: Device[] }): KeyServiceClient {
  return { listDevices: async () => ({ devices: listing.devices }) } as unknown as KeyServiceClient;
}

describe("device directory", () => {
  it("leaves out, and reports, a device listed again under its id with other (validly signed) keys", async () => {
    const original = listedDevice("u1", "d1");
    const listing = { devices: [original] };
    const store = new MemoryStore();
    const errors: unknown[] = [];
    const directory = new DeviceDirectory(fakeKeyService(listing), store, (error) => errors.push(error));
    assert.equal((await directory.devicesOf(["u1"])).length, 1);

    listing.devices = [listedDevice("u1", "d1")];
    directory.invalidate("u1");
    assert.deepEqual(await directory.devicesOf(["u1"]), [], "the swapped keys are not trusted");
    assert.equal(errors.length, 1, "the swap was reported");

    // A later run (same store, fresh cache) still compares with the record kept.
    const restarted = new DeviceDirectory(fakeKeyService(listing), store, (error) => errors.push(error));
    assert.equal(await restarted.findDevice("u1", "d1"), undefined);
    listing.devices = [original];
    restarted.invalidate("u1");
    assert.equal((await restarted.devicesOf(["u1"]))[0]?.deviceId, "d1", "the original keys are still accepted");
  });
});
