// Copy buttons for the CLI credentials page. Optional: every block is plain selectable
// text, so the page works without this script.
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
