// Parses LogQL expressions (a JSON array on stdin) with Grafana's own grammar, @grafana/lezer-logql;
// prints a JSON array: for each expression null when it parses, else the offset of the first error.
const { parser } = require("@grafana/lezer-logql");

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const result = JSON.parse(input).map((expr) => {
    let error = null;
    parser.parse(expr).iterate({ enter: (node) => { if (node.type.isError && error === null) error = node.from; } });
    return error;
  });
  process.stdout.write(JSON.stringify(result));
});
