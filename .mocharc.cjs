// Mocha settings; CI forbids .only so a focused test can never hide the rest of the suite.
// Test files named on the command line (`npm test -- test/x.test.ts`) run alone; otherwise
// the whole suite runs.
const namesFiles = process.argv.slice(2).some((arg) => arg.endsWith(".ts"));
module.exports = {
  extension: ["ts"],
  spec: namesFiles ? [] : ["test/**/*.test.ts"],
  timeout: 30000,
  exit: true,
  forbidOnly: Boolean(process.env.CI),
};
