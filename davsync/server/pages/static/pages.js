'use strict';
// davsync's folder page: local times, sort, search, and (for sessions that may write) upload,
// new folder, rename and delete, each a plain WebDAV request the server checks like any other.
(() => {
  const body = document.body;
  const tbody = document.querySelector('#list tbody');
  const empty = document.getElementById('empty');
  const filter = document.getElementById('filter');
  const rows = () => Array.from(tbody.rows);
  let sortKey = 'name';
  let ascending = true;

  function localTimes(root) {
    for (const t of root.querySelectorAll('time[datetime]')) {
      const d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d.getTime())) {
        t.textContent = d.toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'short'});
        t.title = d.toString();
      }
    }
  }

  function applySort() {
    const list = rows();
    list.sort((a, b) => {
      if (a.dataset.dir !== b.dataset.dir) return Number(b.dataset.dir) - Number(a.dataset.dir);
      let r = sortKey === 'name' ? 0 : Number(a.dataset[sortKey]) - Number(b.dataset[sortKey]);
      if (r === 0) r = a.dataset.name.localeCompare(b.dataset.name, undefined, {numeric: true, sensitivity: 'base'});
      return ascending ? r : -r;
    });
    for (const r of list) tbody.appendChild(r);
    for (const b of document.querySelectorAll('[data-sort]')) {
      const on = b.dataset.sort === sortKey;
      b.setAttribute('aria-pressed', String(on));
      b.dataset.order = on ? (ascending ? 'asc' : 'desc') : '';
    }
  }

  function applyFilter() {
    const q = filter.value.trim().toLocaleLowerCase();
    let shown = 0;
    for (const r of rows()) {
      const ok = !q || r.dataset.name.toLocaleLowerCase().includes(q);
      r.hidden = !ok;
      if (ok) shown++;
    }
    empty.hidden = shown > 0;
    empty.textContent = rows().length ? 'Nothing here matches the search.' : 'This folder is empty.';
  }

  localTimes(document);
  if (!tbody) { fileVersions(); return; } // a file's page (viewer.py)

  // A file's earlier versions (deleted.py), for users who may write: listed when opened
  function fileVersions() {
    const box = document.getElementById('versions');
    if (!box) return;
    const path = location.pathname;
    const folder = path.slice(0, path.lastIndexOf('/') + 1);
    const name = decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
    const ul = document.getElementById('versions-list');
    async function list() {
      const r = await fetch(path + '?versions', {credentials: 'same-origin', cache: 'no-store'});
      const rows = r.ok ? await r.json() : [];
      ul.replaceChildren();
      if (!rows.length) { const li = document.createElement('li'); li.textContent = r.ok ? 'No earlier version is kept.' : 'Could not list the versions.'; ul.appendChild(li); }
      for (const v of rows) {
        const li = document.createElement('li');
        li.dataset.id = v.id;
        const when = new Date(v.time).toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'short'});
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'restore';
        button.textContent = 'Restore';
        button.setAttribute('aria-label', 'Restore the version of ' + when);
        button.addEventListener('click', async () => {
          const resp = await fetch(folder + '?restore', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-Davsync-Page': '1'}, body: JSON.stringify({id: v.id, name})});
          const data = await resp.json().catch(() => ({}));
          if (resp.ok) location.reload();
          else li.append(' Could not restore: ' + (data.error || 'HTTP ' + resp.status));
        });
        li.append(v.size + ' · set aside ' + when + ' · ' + v.user + ' ', button);
        ul.appendChild(li);
      }
    }
    box.addEventListener('toggle', () => { if (box.open) list(); });
    if (location.hash === '#share') { box.open = true; box.scrollIntoView(); } // "Share its folder" on a file's page
  }

  // a thumbnail the server could not make (thumbs.py): the image icon instead
  tbody.addEventListener('error', (ev) => {
    const img = ev.target;
    if (!(img instanceof HTMLImageElement) || !img.classList.contains('thumb')) return;
    const icon = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    icon.setAttribute('class', 'icon image');
    icon.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', '#i-image');
    icon.appendChild(use);
    img.replaceWith(icon);
  }, true);

  for (const b of document.querySelectorAll('[data-sort]')) {
    b.addEventListener('click', () => {
      if (b.dataset.sort === sortKey) ascending = !ascending;
      else { sortKey = b.dataset.sort; ascending = sortKey === 'name'; }
      applySort();
    });
  }
  filter.addEventListener('input', applyFilter);

  sharing();
  if (body.dataset.write !== '1') return;

  // Share links (sharing.py): make one for this folder or one of its files, list the user's own, withdraw one
  function sharing() {
    const box = document.getElementById('share');
    if (!box) return;
    const folder = location.pathname;
    const ul = document.getElementById('share-list');
    const tell = (text) => { document.getElementById('share-note').textContent = text; };
    const made = document.getElementById('share-made');
    const post = (query, data, name) => fetch(folder + (name ? encodeURIComponent(name) : '') + '?' + query, {method: 'POST',
      credentials: 'same-origin', headers: {'Content-Type': 'application/json', 'X-Davsync-Page': '1'}, body: JSON.stringify(data)});
    let chosen = ''; // '' is this folder; else the name of a file in it (its row's Share, or its page's)
    function choose(name) {
      chosen = name;
      document.getElementById('share-summary').textContent = name ? 'Share “' + name + '” by link' : 'Share this folder by link';
      document.getElementById('share-rw').textContent = name ? 'Also replace it with a new version' : 'Also upload, rename and delete';
      const drop = document.getElementById('share-drop'); // a drop link collects uploads into a folder: not for a file
      drop.hidden = !!name;
      if (name && drop.querySelector('input').checked) box.querySelector('input[value="read-only"]').checked = true;
      made.hidden = true;
      tell('');
    }
    function open(name) {
      choose(name);
      box.open = true;
      box.scrollIntoView();
      box.querySelector('input[name="mode"]:checked').focus();
    }
    if (tbody) tbody.addEventListener('click', (ev) => {
      const button = ev.target.closest('button.share');
      if (button) open(button.closest('tr').dataset.name);
    });
    box.addEventListener('toggle', () => { if (!box.open) choose(''); });
    const when = (iso) => new Date(iso).toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'short'});
    const words = {'read-only': 'see and download', 'read-write': 'upload, rename and delete', 'drop': 'upload only'};
    async function list() {
      const r = await fetch(folder + '?links', {credentials: 'same-origin', cache: 'no-store'});
      const links = r.ok ? await r.json() : null;
      ul.replaceChildren();
      if (!links || !links.length) {
        const li = document.createElement('li');
        li.textContent = links ? 'You have made no links yet.' : 'Could not list your links.';
        ul.appendChild(li);
        return;
      }
      for (const l of links) {
        const li = document.createElement('li');
        li.dataset.id = l.id;
        li.dataset.state = l.state;
        const state = l.state === 'active' ? (l.expires_iso ? 'until ' + when(l.expires_iso) : 'no end date') : l.state;
        li.append(l.folder + ' · ' + words[l.mode] + ' · ' + state + (l.has_password ? ' · password' : '') +
          (l.label ? ' · ' + l.label : '') + ' ');
        if (l.state === 'active') {
          const button = document.createElement('button');
          button.type = 'button';
          button.className = 'revoke';
          button.textContent = 'Withdraw';
          button.setAttribute('aria-label', 'Withdraw the link ' + l.id + ' to ' + l.folder);
          button.addEventListener('click', async () => {
            const resp = await post('unshare', {id: l.id});
            const data = await resp.json().catch(() => ({}));
            tell(resp.ok ? data.message : 'Could not withdraw the link: ' + (data.error || 'HTTP ' + resp.status));
            await list();
          });
          li.appendChild(button);
        }
        ul.appendChild(li);
      }
    }
    document.getElementById('share-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      const resp = await post('share', {mode: form.elements.mode.value, expires: form.elements.expires.value,
        password: form.elements.password.value, label: form.elements.label.value}, chosen);
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) { tell('Could not make the link: ' + (data.error || 'HTTP ' + resp.status)); return; }
      form.elements.password.value = '';
      document.getElementById('share-message').textContent = data.message;
      document.getElementById('share-url').value = data.url;
      document.getElementById('share-qr').src = data.qr;
      made.hidden = false;
      await list();
    });
    document.getElementById('share-copy').addEventListener('click', async () => {
      const field = document.getElementById('share-url');
      field.select();
      try { await navigator.clipboard.writeText(field.value); tell('Link copied.'); } catch (e) { tell('Select the link and copy it.'); }
    });
    box.addEventListener('toggle', () => { if (box.open) list(); });
    if (location.hash === '#share') { box.open = true; box.scrollIntoView(); }
    if (location.hash.startsWith('#share=')) open(decodeURIComponent(location.hash.slice(7))); // a file's page: "Share this file"
  }

  const here = location.pathname; // always ends with '/': the server redirects to it
  const status = document.getElementById('status');
  const say = (text) => { status.textContent = text; };
  const target = (name, isDir) => here + encodeURIComponent(name) + (isDir ? '/' : '');
  const badName = (name) => !name || name === '.' || name === '..' || /[\/\\\u0000]/.test(name);

  async function problem(r) {
    const text = (await r.text()).trim().split('\n')[0].slice(0, 200);
    return text && !text.startsWith('<') ? text : 'HTTP ' + r.status;
  }

  async function refresh() {
    const r = await fetch(here, {headers: {Accept: 'text/html'}, credentials: 'same-origin', cache: 'no-store'});
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
    const fresh = doc.querySelector('#list tbody');
    if (!fresh) return;
    localTimes(fresh);
    tbody.replaceChildren(...Array.from(fresh.rows).map((row) => document.importNode(row, true)));
    applySort();
    applyFilter();
  }

  async function dav(method, url, headers) {
    const r = await fetch(url, {method, headers: headers || {}, credentials: 'same-origin'});
    if (!r.ok) throw new Error(await problem(r));
  }

  document.getElementById('mkdir').addEventListener('click', async () => {
    const name = (prompt('Name of the new folder:') || '').trim();
    if (!name) return;
    if (badName(name)) { say('A folder name cannot contain / or \\ or be . or ..'); return; }
    try {
      await dav('MKCOL', target(name, true));
      say('Folder “' + name + '” created.');
      await refresh();
    } catch (e) { say('Could not create “' + name + '”: ' + e.message); }
  });

  tbody.addEventListener('click', async (ev) => {
    const button = ev.target.closest('button');
    if (!button) return;
    const row = button.closest('tr');
    const name = row.dataset.name;
    const isDir = row.dataset.dir === '1';
    if (button.classList.contains('delete')) {
      if (!confirm('Delete “' + name + '”? The server keeps it among its versions for a while, so it can be restored.')) return;
      try {
        await dav('DELETE', target(name, isDir));
        say('Deleted “' + name + '”; it is kept in the server\'s versions and can be restored.');
        await refresh();
      } catch (e) { say('Could not delete “' + name + '”: ' + e.message); }
    } else if (button.classList.contains('rename')) {
      const to = (prompt('New name (or a path such as other/' + name + ' to move it):', name) || '').trim();
      if (!to || to === name) return;
      const parts = to.split('/').filter((p) => p);
      if (!parts.length || parts.some(badName)) { say('That is not a valid name.'); return; }
      const dest = location.origin + here + parts.map(encodeURIComponent).join('/') + (isDir ? '/' : '');
      try {
        await dav('MOVE', target(name, isDir), {Destination: dest, Overwrite: 'F'});
        say('Renamed “' + name + '” to “' + to + '”.');
        await refresh();
      } catch (e) { say('Could not rename “' + name + '”: ' + e.message); }
    }
  });

  // Recently deleted (deleted.py): listed when opened, each with a Restore button
  const deletedBox = document.getElementById('deleted');
  async function listDeleted() {
    const ul = document.getElementById('deleted-list');
    const r = await fetch(here + '?deleted', {credentials: 'same-origin', cache: 'no-store'});
    if (!r.ok) { ul.textContent = 'Could not list deleted files: ' + await problem(r); return; }
    const rows = await r.json();
    ul.replaceChildren();
    if (!rows.length) { const li = document.createElement('li'); li.textContent = 'Nothing deleted here is kept.'; ul.appendChild(li); }
    for (const v of rows) {
      const li = document.createElement('li');
      li.dataset.name = v.name;
      const label = document.createElement('span');
      const when = new Date(v.time);
      label.textContent = v.name + (v.is_dir ? '/' : '') + ' · ' + v.size + ' · ' + when.toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'short'}) + ' · ' + v.user;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'restore';
      button.textContent = 'Restore';
      button.setAttribute('aria-label', 'Restore ' + v.name);
      button.addEventListener('click', async () => {
        const resp = await fetch(here + '?restore', {method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json', 'X-Davsync-Page': '1'}, body: JSON.stringify({id: v.id, name: v.name})});
        const data = await resp.json().catch(() => ({}));
        say(resp.ok ? data.message : 'Could not restore “' + v.name + '”: ' + (data.error || 'HTTP ' + resp.status));
        await refresh();
        await listDeleted();
      });
      li.append(label, ' ', button);
      ul.appendChild(li);
    }
  }
  if (deletedBox) deletedBox.addEventListener('toggle', () => { if (deletedBox.open) listDeleted(); });

  // uploads (upload.js): the pickers, the drop zone, then the listing again
  window.davsyncUploads.attach({here, list: document.getElementById('uploads'), say, zone: document.getElementById('dropzone'),
    pickers: [document.getElementById('files'), document.getElementById('folder')], done: refresh});
})();
