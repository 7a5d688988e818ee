import { defineConfig } from "vite";

// Served by the API at /console (api/routes/console.py). `npm run dev` proxies the API.
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "dist",
    target: "es2022",
    // No inline script or style: the API serves the console under a strict CSP.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: { "/api": process.env.SWITCHBOARD_API ?? "http://127.0.0.1:8000" },
  },
});
