// Compiles contracts/src with the pinned solc-js into contracts/artifacts/<Name>.json.
// `node contracts/build.mjs --check` recompiles in memory and fails when a committed artifact
// differs, so the artifacts in git are always what the pinned toolchain makes of the sources.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const srcDir = path.join(here, "src");
const outDir = path.join(here, "artifacts");
const settings = {
  evmVersion: "prague",
  viaIR: true, // the IR pipeline's smaller code keeps BahenMarket under EIP-170's limit
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function listSources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return listSources(full);
    return entry.name.endsWith(".sol") ? [full] : [];
  }).sort();
}

// Imports resolve against node_modules, so the OpenZeppelin version is the one in the lockfile.
function findImport(importPath) {
  const file = path.join(root, "node_modules", importPath);
  if (!fs.existsSync(file)) return { error: `import not found: ${importPath} (run npm ci)` };
  return { contents: fs.readFileSync(file, "utf8") };
}

function compile() {
  const sources = {};
  for (const file of listSources(srcDir)) {
    const key = path.relative(here, file).split(path.sep).join("/");
    sources[key] = { content: fs.readFileSync(file, "utf8") };
  }
  const input = { language: "Solidity", sources, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) console.error(e.formattedMessage);
  if (errors.length) process.exit(1);
  const artifacts = {};
  for (const sourceName of Object.keys(sources)) {
    for (const [name, contract] of Object.entries(output.contracts[sourceName] || {})) {
      const artifact = {
        contractName: name,
        sourceName,
        compiler: { version: solc.version(), settings: { evmVersion: settings.evmVersion, viaIR: settings.viaIR, optimizer: settings.optimizer } },
        abi: contract.abi,
        bytecode: "0x" + contract.evm.bytecode.object,
        deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
      };
      artifacts[`${name}.json`] = JSON.stringify(artifact, null, 2) + "\n";
    }
  }
  return artifacts;
}

function write(artifacts) {
  fs.mkdirSync(outDir, { recursive: true });
  for (const [file, text] of Object.entries(artifacts)) {
    const target = path.join(outDir, file);
    const tmp = `${target}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, target);
  }
  for (const file of fs.readdirSync(outDir)) {
    if (file.endsWith(".json") && !(file in artifacts)) fs.unlinkSync(path.join(outDir, file));
  }
  console.log(`wrote ${Object.keys(artifacts).length} artifacts to ${path.relative(root, outDir)}`);
}

function check(artifacts) {
  const committed = fs.existsSync(outDir) ? fs.readdirSync(outDir).filter((f) => f.endsWith(".json")) : [];
  const names = new Set([...committed, ...Object.keys(artifacts)]);
  const stale = [...names].sort().filter((file) => {
    const target = path.join(outDir, file);
    return !fs.existsSync(target) || fs.readFileSync(target, "utf8") !== artifacts[file];
  });
  if (stale.length) {
    console.error(`artifacts differ from a fresh compile: ${stale.join(", ")}; run npm run build:contracts and commit`);
    process.exit(1);
  }
  console.log(`${names.size} artifacts match a fresh compile with solc ${solc.version()}`);
}

const artifacts = compile();
if (process.argv.includes("--check")) check(artifacts);
else write(artifacts);
