// Writes dist/ts/index.mjs: an ES-module entry that re-exports the CommonJS build by name, so `import { x } from
// "gradmm"` and `require("gradmm")` share one instance of the library (and one native addon).
const fs = require("node:fs");
const path = require("node:path");
const dist = path.join(__dirname, "..", "dist", "ts");
const api = require(path.join(dist, "index.js"));
const names = Object.keys(api).filter((n) => n !== "default" && n !== "__esModule");
const body =
  `import api from "./index.js";\n` +
  names.map((n) => `export const ${n} = api.${n};`).join("\n") +
  `\nexport default api;\n`;
fs.writeFileSync(path.join(dist, "index.mjs.tmp"), body);
fs.renameSync(path.join(dist, "index.mjs.tmp"), path.join(dist, "index.mjs"));
