/**
 * The lab controller's read-only dashboard (`netfleet serve --ui`): it
 * listens on the loopback of the controller's namespace (the switch
 * namespace), so only a browser started in that namespace reaches it
 * (`ip netns exec <ns> chromium ...`), as on a real controller only its
 * own host's users do.
 */
export const LAB_UI_LISTEN = "127.0.0.1:34180";

/** The dashboard's URL, from inside the controller's namespace. */
export const LAB_UI_URL = `http://${LAB_UI_LISTEN}/`;
