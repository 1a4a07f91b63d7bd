// Placeholder demo page: shows that the page is served cross-origin isolated,
// which SharedArrayBuffer (and so webhmm) requires.
const app = document.querySelector('#app') ?? document.body;
const title = document.createElement('h1');
title.textContent = 'webhmm demo';
const status = document.createElement('p');
status.id = 'isolation';
status.textContent = `crossOriginIsolated: ${String(crossOriginIsolated)}`;
app.append(title, status);
