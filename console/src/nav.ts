// Paths under /console/; the app routes in the browser (the API answers index.html for them).

export const BASE = "/console/";

let renderer: () => void = () => undefined;

export function onNavigate(render: () => void): void {
  renderer = render;
}

export function navigate(path: string, replace = false): void {
  const url = BASE + path.replace(/^\//, "");
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  renderer();
}

/** Moves the address bar without rendering again (the view already shows it). */
export function setPath(path: string): void {
  history.replaceState(null, "", BASE + path.replace(/^\//, ""));
}
