// Mocha settings; CI forbids .only so a focused test can never hide the rest of the suite.
module.exports = {
  extension: ["ts"],
  spec: ["test/**/*.test.ts"],
  timeout: 30000,
  exit: true,
  forbidOnly: Boolean(process.env.CI),
};
