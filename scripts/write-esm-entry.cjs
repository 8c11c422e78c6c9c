// Writes dist/ts/index.mjs and dist/ts/advanced.mjs: ES-module entries that re-export the CommonJS builds by name,
// so `import { x } from "gradmm"` and `require("gradmm")` (likewise "gradmm/advanced") share one instance of the
// library (and one native addon).
const fs = require("node:fs");
const path = require("node:path");
const dist = path.join(__dirname, "..", "dist", "ts");
for (const entry of ["index", "advanced"]) {
  const api = require(path.join(dist, `${entry}.js`));
  const names = Object.keys(api).filter((n) => n !== "default" && n !== "__esModule");
  const body =
    `import api from "./${entry}.js";\n` +
    names.map((n) => `export const ${n} = api.${n};`).join("\n") +
    `\nexport default api;\n`;
  fs.writeFileSync(path.join(dist, `${entry}.mjs.tmp`), body);
  fs.renameSync(path.join(dist, `${entry}.mjs.tmp`), path.join(dist, `${entry}.mjs`));
}
