// Copy buttons and local times. Optional: every block is plain selectable text and every
// time is also shown in UTC, so the pages work without this script.
document.querySelectorAll('button[data-copy]').forEach((button) => {
  button.hidden = false;
  button.addEventListener('click', async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = 'Copied';
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    } catch (e) {
      button.textContent = 'Select and copy';
    }
  });
});

// <time data-local datetime="…Z">: add the time in the person's own time zone.
document.querySelectorAll('time[data-local]').forEach((t) => {
  const when = new Date(t.getAttribute('datetime'));
  if (Number.isNaN(when.getTime())) return;
  const local = document.getElementById(t.dataset.local);
  if (local) local.textContent = ` (${when.toLocaleString()} your time)`;
});
