import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'data/', 'coverage/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { require: 'readonly', module: 'writable', process: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-console': 'off',
    },
  },
  {
    // CommonJS launchers (jest.config.js, the test service runner) load modules with require.
    files: ['**/*.js'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The integration examples the README shows (and tests run): a browser page's module, whose
    // page defines the archive's URL and key, and Node scripts.
    files: ['examples/**/*.js', 'examples/**/*.mjs'],
    languageOptions: {
      globals: {
        console: 'readonly',
        document: 'readonly',
        EVIDENCE_URL: 'readonly',
        INGEST_KEY: 'readonly',
      },
    },
  },
  {
    // Migrations are frozen in time and typed Kysely<any>, as Kysely's migration docs advise.
    files: ['migrations/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
