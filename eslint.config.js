// @ts-check
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "bench/results/", "coverage/", ".tmp*/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }
      ],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "no-console": "off",
      // Effect's modules one by one, as Effect's own packages import them:
      // a barrel loads every module of its package (for "effect", ~20 MB of
      // RSS and ~0.25 s more at start than the modules used here).
      "no-restricted-imports": [
        "error",
        {
          paths: ["effect", "@effect/platform", "@effect/platform-node", "@effect/cli"].map(
            (name) => ({
              name,
              message: `Import the module itself, e.g. \`import * as Effect from "effect/Effect"\`: the barrel "${name}" loads every module of the package.`
            })
          )
        }
      ]
    }
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly"
      }
    }
  }
)
