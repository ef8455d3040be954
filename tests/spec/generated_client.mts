// A client generated from api/openapi.yaml (openapi-typescript types,
// openapi-fetch calls), compiled with tsc --strict against those types:
// creates a VM, waits for it to run, finds it in the list and deletes it.
// Env: FOG_URL, FOG_KEY, FOG_IMAGE; the CA comes in NODE_EXTRA_CA_CERTS.
// Prints one line per step; exits non-zero at the first step that fails.
import createClient from "openapi-fetch";
import type { paths, components } from "./api.js";

type Vm = components["schemas"]["Vm"];
type Problem = components["schemas"]["Problem"];

const url = process.env.FOG_URL ?? "";
const key = process.env.FOG_KEY ?? "";
const image = process.env.FOG_IMAGE ?? "tiny";
const client = createClient<paths>({
    baseUrl: url,
    headers: { Authorization: `Bearer ${key}` },
});

function fail(step: string, status: number, problem?: Problem): never {
    console.error(`FAIL ${step}: HTTP ${status} ${problem?.type ?? ""} ${problem?.detail ?? ""}`);
    process.exit(1);
}

async function waitState(id: string, want: Vm["state"]): Promise<Vm> {
    const end = Date.now() + 90_000;
    for (;;) {
        const { data, error, response } = await client.GET("/v1/vms/{id}", {
            params: { path: { id } },
        });
        if (!data)
            fail("get", response.status, error);
        if (data.state === want)
            return data;
        if (Date.now() > end)
            fail(`wait for ${want} (is ${data.state})`, response.status);
        await new Promise((r) => setTimeout(r, 200));
    }
}

const created = await client.POST("/v1/vms", {
    body: { name: "as-gen", vcpus: 1, memory_mib: 128, disk_gib: 1,
            image, allow_tcg: true },
});
if (!created.data)
    fail("create", created.response.status, created.error);
// 201 answers the VM; 200 would be a dry run's placement.
if (!("id" in created.data))
    fail("create answered a dry run", created.response.status);
const vm: Vm = created.data;
const id: string = vm.id;
console.log(`created ${id} (${created.response.status}, ${vm.state})`);

const running = await waitState(id, "running");
console.log(`running on ${running.node_name ?? "?"}`);

const listed = await client.GET("/v1/vms", { params: { query: { limit: 100 } } });
if (!listed.data)
    fail("list", listed.response.status, listed.error);
const mine = listed.data.items?.filter((v: Vm) => v.id === id) ?? [];
if (mine.length !== 1)
    fail(`list holds ${mine.length} VMs with id ${id}`, listed.response.status);
console.log(`listed ${listed.data.items?.length} VM(s), ours ${mine[0].state}`);

const deleted = await client.DELETE("/v1/vms/{id}", { params: { path: { id } } });
if (!deleted.data)
    fail("delete", deleted.response.status, deleted.error);
console.log(`delete answered ${deleted.response.status} (${deleted.data.desired_state})`);

const end = Date.now() + 90_000;
for (;;) {
    const { error, response } = await client.GET("/v1/vms/{id}", {
        params: { path: { id } },
    });
    if (response.status === 404) {
        console.log(`gone: ${error?.type}`);
        break;
    }
    if (Date.now() > end)
        fail("wait for the VM to be gone", response.status);
    await new Promise((r) => setTimeout(r, 200));
}
