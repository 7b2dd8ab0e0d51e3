import { useCallback, useEffect, useState } from 'react';
import { parseRoute, routePath, type Route } from '../route';

function here(): Route {
  return parseRoute(window.location.pathname, window.location.search);
}

/**
 * The page's route, from its URL, and how to go elsewhere: `navigate` pushes a history entry
 * (replaces the current one with `replace`, or when it is the same place), and Back and
 * Forward (popstate) come back here.
 */
export function useRoute(): [Route, (r: Route, replace?: boolean) => void] {
  const [route, setRoute] = useState<Route>(here);
  useEffect(() => {
    const onPop = () => setRoute(here());
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  const navigate = useCallback((r: Route, replace = false) => {
    const path = routePath(r);
    const current = window.location.pathname + window.location.search;
    if (replace || path === current) window.history.replaceState(null, '', path);
    else window.history.pushState(null, '', path);
    setRoute(r);
  }, []);
  return [route, navigate];
}
