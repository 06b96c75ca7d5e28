/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The API server used by `npm run dev` (REST and WebSockets are proxied to it).
const api = process.env.WIRETRAIL_API ?? "http://127.0.0.1:18899";

export default defineConfig({
  base: "/",
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 700,
    modulePreload: { polyfill: false },
  },
  server: {
    port: 5173,
    host: "127.0.0.1",
    proxy: {
      "/api": { target: api, ws: true, changeOrigin: false },
      "/metrics": { target: api },
      "/healthz": { target: api },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
