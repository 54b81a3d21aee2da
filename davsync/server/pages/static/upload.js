'use strict';
// Uploads for davsync's pages (a folder page, a drop link's page): several files, folders (a
// picked folder's paths, or a dropped one read with webkitGetAsEntry), a progress bar per file,
// and big files in resumable parts (the server's resumable.py, the IETF draft's wire form): a part
// that is cut off goes on from the offset the server reports, not from the start.
window.davsyncUploads = (() => {
  const RESUMABLE_FROM = 1024 * 1024; // smaller files go in one PUT
  const RETRIES = 40; // about three minutes of a broken connection, then the file is given up
  const PARALLEL = 3;
  const badName = (name) => !name || name === '.' || name === '..' || /[\/\\\u0000]/.test(name);
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

  function fromFiles(files) {
    return Array.from(files).map((file) => ({file, path: file.webkitRelativePath || file.name}));
  }

  // A drop: folders are walked (Chromium, Firefox, Safari); the entries must be taken at once,
  // while the drop event is still being handled
  function fromDrop(dataTransfer) {
    const entries = Array.from(dataTransfer.items || [])
      .map((item) => (item.kind === 'file' && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
      .filter(Boolean);
    if (!entries.length) return Promise.resolve(fromFiles(dataTransfer.files));
    const out = [];
    async function walk(entry, prefix) {
      if (entry.isFile) {
        out.push({file: await new Promise((ok, bad) => entry.file(ok, bad)), path: prefix + entry.name});
        return;
      }
      out.push({dir: prefix + entry.name}); // an empty folder is made too
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        if (!batch.length) break;
        for (const e of batch) await walk(e, prefix + entry.name + '/');
      }
    }
    return (async () => { for (const e of entries) await walk(e, ''); return out; })();
  }

  function request(method, url, headers, body, onProgress) {
    return new Promise((resolve) => {
      const x = new XMLHttpRequest();
      x.open(method, url);
      for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
      if (onProgress) x.upload.onprogress = (e) => onProgress(e.loaded);
      x.onload = () => resolve(x);
      x.onerror = x.onabort = x.ontimeout = () => resolve(null); // the connection broke
      x.send(body);
    });
  }

  const problem = (x) => {
    const text = (x.responseText || '').trim().split('\n')[0].slice(0, 200);
    return text && !text.startsWith('<') ? text : 'HTTP ' + x.status;
  };

  function row(list, item) {
    const li = document.createElement('li');
    const label = document.createElement('span');
    const bar = document.createElement('progress');
    const note = document.createElement('span');
    label.textContent = item.path;
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute('aria-label', 'Upload of ' + item.path);
    note.className = 'note';
    li.append(label, bar, note);
    li.dataset.state = 'sending';
    list.appendChild(li);
    const size = item.file.size || 1;
    return {
      li,
      progress: (sent) => { bar.value = Math.min(100, Math.round(100 * sent / size)); },
      state: (state, text) => { li.dataset.state = state; note.textContent = text ? ' ' + text : ''; if (state === 'done') bar.value = 100; },
    };
  }

  async function put(item, url, show) {
    const x = await request('PUT', url, {'X-OC-Mtime': String(Math.floor(item.file.lastModified / 1000))}, item.file,
      show.progress);
    if (!x) return 'the connection broke; try again.';
    return x.status >= 200 && x.status < 300 ? null : problem(x);
  }

  async function resumable(item, url, show) {
    const f = item.file;
    let made = null;
    for (let i = 0; !made && i < 3; i++) {
      made = await request('POST', url, {'Upload-Complete': '?0', 'Upload-Length': String(f.size),
        'X-OC-Mtime': String(Math.floor(f.lastModified / 1000))}, null);
      if (!made) await sleep(1000);
    }
    if (!made) return 'the connection broke; try again.';
    if (made.status === 405 || made.status === 501) return put(item, url, show); // no resumable uploads here (a read-write link)
    if (made.status !== 201 || !made.getResponseHeader('Location')) return problem(made);
    const where = made.getResponseHeader('Location');
    let offset = Number(made.getResponseHeader('Upload-Offset') || 0);
    for (let tries = 0; ; tries++) {
      const x = await request('PATCH', where, {'Content-Type': 'application/partial-upload',
        'Upload-Offset': String(offset), 'Upload-Complete': '?1'}, f.slice(offset), (n) => show.progress(offset + n));
      if (x && x.status >= 200 && x.status < 300) return null;
      if (x && ![400, 409].includes(x.status) && x.status < 500) return problem(x);
      // cut off, or the server was away: ask it how much it has, and send the rest
      if (tries >= RETRIES) return 'the connection keeps breaking; try again later.';
      show.state('retrying', 'connection broken, resuming…');
      await sleep(Math.min(500 * (tries + 1), 5000));
      const h = await request('HEAD', where, {}, null);
      if (h && h.status === 404) return 'the server no longer has this upload; start it again.';
      if (h && h.status === 204) {
        offset = Number(h.getResponseHeader('Upload-Offset'));
        show.li.dataset.resumedAt = String(offset);
        show.state('sending', 'resuming at ' + Math.round(100 * offset / (f.size || 1)) + '%');
      }
    }
  }

  // items: [{file, path}] and [{dir}]; here: the folder's URL path ending in '/'. Folders are
  // made first (MKCOL; 405 is a folder already there), then the files, a few at a time.
  async function uploadAll(items, here, list, say) {
    const urlOf = (rel) => here + rel.split('/').map(encodeURIComponent).join('/');
    const chosen = items.filter((i) => !(i.path || i.dir).split('/').some(badName));
    const files = chosen.filter((i) => i.file);
    const folders = new Set();
    for (const i of chosen) {
      const parts = (i.dir ? i.dir + '/x' : i.path).split('/').slice(0, -1);
      for (let n = 1; n <= parts.length; n++) folders.add(parts.slice(0, n).join('/'));
    }
    if (!files.length && !folders.size) return {sent: 0, failed: 0};
    say('Uploading ' + files.length + (files.length === 1 ? ' file…' : ' files…'));
    for (const folder of Array.from(folders).sort((a, b) => a.split('/').length - b.split('/').length)) {
      const x = await request('MKCOL', urlOf(folder) + '/', {}, null);
      if (!x || (x.status >= 300 && x.status !== 405)) {
        say('Nothing was uploaded: could not create the folder “' + folder + '”: ' + (x ? problem(x) : 'the connection broke') + '.');
        return {sent: 0, failed: files.length};
      }
    }
    let failed = 0;
    const queue = files.slice();
    async function worker() {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const show = row(list, item);
        const how = item.file.size >= RESUMABLE_FROM ? resumable : put;
        const why = await how(item, urlOf(item.path), show);
        if (why) failed++;
        show.state(why ? 'failed' : 'done', why ? 'failed: ' + why : 'uploaded');
      }
    }
    await Promise.all(Array.from({length: PARALLEL}, worker));
    const one = files.length === 1 ? files[0].path : null;
    say(failed ? failed + ' of ' + files.length + ' uploads failed.'
      : 'Uploaded ' + (one || files.length + ' files') + '.');
    return {sent: files.length - failed, failed};
  }

  // Wires a page's pickers, its drop zone and the whole window as a drop target
  function attach({here, list, say, pickers, zone, done}) {
    const run = (items) => uploadAll(items, here, list, say).then(done || (() => {}));
    for (const picker of pickers) {
      if (picker) picker.addEventListener('change', () => { run(fromFiles(picker.files)).then(() => { picker.value = ''; }); });
    }
    document.addEventListener('dragover', (e) => { e.preventDefault(); if (zone) zone.classList.add('over'); });
    document.addEventListener('dragleave', (e) => { if (!e.relatedTarget && zone) zone.classList.remove('over'); });
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      if (zone) zone.classList.remove('over');
      if (e.dataTransfer) fromDrop(e.dataTransfer).then(run);
    });
  }

  // A drop link's page (link_pages.py) needs nothing else
  if (document.body.dataset.page === 'drop') {
    const status = document.getElementById('status');
    const here = location.pathname.endsWith('/') ? location.pathname : location.pathname.replace(/[^/]*$/, '');
    attach({here, list: document.getElementById('uploads'), say: (text) => { status.textContent = text; },
      zone: document.getElementById('dropzone'), pickers: [document.getElementById('files'), document.getElementById('folder')]});
  }

  return {attach, uploadAll, fromFiles, fromDrop};
})();
